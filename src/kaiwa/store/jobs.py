"""The job table: background work that any replica may claim, run and finish.

    await enqueue(session, "index", {"document_id": d}, key=d)      # in the writer's transaction
    claimed = await claim(session, "index", owner=me, limit=2, lease=30.0, max_attempts=3)
    await renew(session, owner=me, job_ids=[...], lease=30.0)              # every lease / 3
    await finish(session, job, owner=me)                                   # deleted: done
    await retry(session, job, owner=me, delay=4.0, error="HTTP 503")       # back to `queued`
    await fail(session, job, owner=me, error="…")                          # `failed`: kept

A job is `queued` (waiting for `run_at`), `running` (under its owner's lease) or `failed`; one
that succeeds is deleted, since what it did is recorded where its work lives (the document, the
batch item, the webhook's delivery record). Every change made by a runner is a compare-and-set
on `(state, owner, attempts)`: a replica that was presumed dead and wakes up later can no longer
finish, retry or fail a job another replica has taken since.

Claiming takes the due jobs of one kind with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so two
replicas never take the same job and neither waits for the other; on SQLite the transaction
begins `BEGIN IMMEDIATE` (`kaiwa.store.db`), which makes the select and the update one step for
every process on the file. A `running` job whose lease has lapsed is due again: its owner died.
If that was its last attempt, the claim hands it back as `abandoned` instead, for the caller to
record why and then `fail` it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store.db import Db, utc
from kaiwa.store.db import now as utc_now
from kaiwa.store.models import Job

__all__ = [
    "OWNER_STOPPED",
    "Claimed",
    "JobState",
    "KindStats",
    "any_due",
    "busy",
    "claim",
    "enqueue",
    "fail",
    "finish",
    "list_jobs",
    "release",
    "renew",
    "reschedule",
    "retry",
    "retry_failed",
    "stats",
]

JobState = Literal["queued", "running", "failed"]
OWNER_STOPPED = "The server running this job stopped"


def _insert(session: AsyncSession) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING` in the session's dialect."""
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(Job)


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: Mapping[str, Any],
    *,
    key: str | None = None,
    run_at: datetime | None = None,
) -> None:
    """Add a job, in the caller's transaction: it exists once that commits, with the work it is
    about. With a `key`, a job of that kind and key already there (queued, running or failed)
    is left as it is: the same work is one job."""
    stamp = utc_now()
    values = {
        "kind": kind,
        "key": key,
        "payload": dict(payload),
        "state": "queued",
        "owner": None,
        "attempts": 0,
        "max_attempts": 0,  # the kind's handler sets it when it claims the job
        "run_at": run_at or stamp,
        "lease_until": None,
        "last_error": None,
        "created_at": stamp,
        "updated_at": stamp,
    }
    statement = _insert(session).values(**values)
    if key is not None:
        statement = statement.on_conflict_do_nothing(index_elements=["kind", "key"])
    await session.execute(statement)


@dataclass(frozen=True, slots=True)
class Claimed:
    jobs: list[Job] = field(default_factory=list)
    """Taken by this owner, `running`, `attempts` counting this one."""
    abandoned: list[Job] = field(default_factory=list)
    """Their owner died on their last attempt: taken over by this owner only to record that
    (and then `fail` them, with `OWNER_STOPPED`)."""


def _due(stamp: datetime) -> Any:
    """Queued and due, or running on a lease that ran out (its owner stopped)."""
    return or_(
        and_(Job.state == "queued", Job.run_at <= stamp),
        and_(Job.state == "running", Job.lease_until < stamp),
    )


async def any_due(db: Db, kind: str) -> bool:
    """Whether `claim` would find a job of `kind` now: a read, which on SQLite neither takes
    nor waits for the write lock that a claim takes."""
    found = await db.execute(select(Job.id).where(Job.kind == kind, _due(utc_now())).limit(1))
    return found.first() is not None


async def claim(
    session: AsyncSession,
    kind: str,
    *,
    owner: str,
    limit: int,
    lease: float,
    max_attempts: int,
    now: datetime | None = None,
) -> Claimed:
    """Take up to `limit` due jobs of `kind` (oldest `run_at` first) for `owner`; a job gets
    `max_attempts` in all (its kind's handler says how many)."""
    stamp = now or utc_now()
    rows = list(
        await session.scalars(
            select(Job)
            .where(Job.kind == kind, _due(stamp))
            .order_by(Job.run_at, Job.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    taken: list[Job] = []
    abandoned: list[Job] = []
    for job in rows:
        job.max_attempts = max_attempts
        if job.state == "running":
            job.last_error = OWNER_STOPPED
        job.owner = owner
        job.lease_until = stamp + timedelta(seconds=lease)
        if job.state == "running" and job.attempts >= max_attempts:
            abandoned.append(job)  # still `running`, now this owner's, until it is failed
        else:
            job.state = "running"
            job.attempts += 1
            taken.append(job)
        job.updated_at = stamp
    await session.flush()
    return Claimed(jobs=taken, abandoned=abandoned)


def _mine(job: Job, owner: str) -> Any:
    return and_(
        Job.id == job.id,
        Job.state == "running",
        Job.owner == owner,
        Job.attempts == job.attempts,
    )


async def renew(
    session: AsyncSession, *, owner: str, job_ids: Sequence[int], lease: float
) -> set[int]:
    """Extend the lease of these running jobs of `owner`; the ids still its own."""
    if not job_ids:
        return set()
    stamp = utc_now()
    rows = await session.scalars(
        update(Job)
        .where(Job.id.in_(job_ids), Job.state == "running", Job.owner == owner)
        .values(lease_until=stamp + timedelta(seconds=lease), updated_at=stamp)
        .returning(Job.id)
    )
    return set(rows)


async def finish(session: AsyncSession, job: Job, *, owner: str) -> bool:
    """The job succeeded: delete it. False if it was no longer this owner's."""
    result = await session.execute(delete(Job).where(_mine(job, owner)))
    return bool(getattr(result, "rowcount", 0))


async def _leave(session: AsyncSession, job: Job, owner: str, **values: Any) -> bool:
    """Change a running job of `owner`, which lets go of it: compare-and-set, True if it was
    still this owner's attempt."""
    result = await session.execute(
        update(Job)
        .where(_mine(job, owner))
        .values(owner=None, lease_until=None, updated_at=utc_now(), **values)
    )
    return bool(getattr(result, "rowcount", 0))


def _due_in(delay: float) -> datetime:
    return utc_now() + timedelta(seconds=delay)


async def retry(session: AsyncSession, job: Job, *, owner: str, delay: float, error: str) -> bool:
    """Back to `queued`, due in `delay` seconds, with the error of this attempt."""
    return await _leave(
        session, job, owner, state="queued", run_at=_due_in(delay), last_error=error
    )


async def reschedule(session: AsyncSession, job: Job, *, owner: str, delay: float) -> bool:
    """A periodic job ran: queue it again, due in `delay` seconds, its attempts reset."""
    return await _leave(
        session, job, owner, state="queued", attempts=0, run_at=_due_in(delay), last_error=None
    )


async def fail(session: AsyncSession, job: Job, *, owner: str, error: str) -> bool:
    """No more attempts: `failed`, kept with its error until retried by hand."""
    return await _leave(session, job, owner, state="failed", last_error=error)


async def release(session: AsyncSession, job: Job, *, owner: str) -> bool:
    """Give a running job back, as if never taken (this replica is stopping)."""
    return await _leave(
        session, job, owner, state="queued", attempts=Job.attempts - 1, run_at=_due_in(0)
    )


async def retry_failed(
    session: AsyncSession, *, kind: str | None = None, job_ids: Sequence[int] = ()
) -> list[Job]:
    """Queue failed jobs again with fresh attempts (all, or those of `kind`, or `job_ids`)."""
    query = select(Job).where(Job.state == "failed")
    if kind is not None:
        query = query.where(Job.kind == kind)
    if job_ids:
        query = query.where(Job.id.in_(job_ids))
    jobs = list(await session.scalars(query.with_for_update()))
    stamp = utc_now()
    for job in jobs:
        job.state = "queued"
        job.attempts = 0
        job.run_at = stamp
        job.updated_at = stamp
    await session.flush()
    return jobs


@dataclass(frozen=True, slots=True)
class KindStats:
    kind: str
    queued: int
    """Waiting, due now or later."""
    running: int
    failed: int
    oldest_due_age: float | None
    """Seconds the longest-waiting due job has been due; None when none is."""


async def stats(session: AsyncSession, *, now: datetime | None = None) -> list[KindStats]:
    """Depth and age of the queue, per kind."""
    stamp = now or utc_now()
    counts: dict[str, dict[str, int]] = {}
    rows = await session.execute(
        select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
    )
    for kind, state, count in rows:
        counts.setdefault(kind, {})[state] = int(count)
    due = await session.execute(
        select(Job.kind, func.min(Job.run_at))
        .where(Job.state == "queued", Job.run_at <= stamp)
        .group_by(Job.kind)
    )
    oldest = {kind: first for kind, first in due}
    out = []
    for kind in sorted(counts):
        first = oldest.get(kind)
        out.append(
            KindStats(
                kind=kind,
                queued=counts[kind].get("queued", 0),
                running=counts[kind].get("running", 0),
                failed=counts[kind].get("failed", 0),
                oldest_due_age=(stamp - utc(first)).total_seconds() if first is not None else None,
            )
        )
    return out


async def busy(session: AsyncSession, kinds: Sequence[str]) -> bool:
    """Whether a job of `kinds` is running or waiting to (now or after a backoff)."""
    found = await session.scalar(
        select(Job.id).where(Job.kind.in_(kinds), Job.state.in_(("queued", "running"))).limit(1)
    )
    return found is not None


async def list_jobs(
    session: AsyncSession, *, state: JobState | None = None, kind: str | None = None, limit: int
) -> list[Job]:
    """Jobs, oldest first, for an operator to look at."""
    query = select(Job).order_by(Job.id).limit(limit)
    if state is not None:
        query = query.where(Job.state == state)
    if kind is not None:
        query = query.where(Job.kind == kind)
    return list(await session.scalars(query))
