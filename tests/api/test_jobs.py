"""The job queue (`kaiwa.store.jobs`) and its worker (`kaiwa.runtime.jobs`), on SQLite and
PostgreSQL: claims are exclusive, leases lapse, attempts are capped with backoff, a job whose
owner died is taken over, and a replica presumed dead can no longer record anything."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.bus.bell import LocalBell
from kaiwa.runtime.jobs import JobWorker, Reschedule, Retry
from kaiwa.store import jobs
from kaiwa.store.db import create_engine, migrate, now, session_factory, transaction
from kaiwa.store.models import Job

LEASE = 30.0


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    await migrate(engine)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def add(sessions: async_sessionmaker[AsyncSession], kind: str, *keys: str) -> None:
    async with transaction(sessions) as session:
        for key in keys:
            await jobs.enqueue(session, kind, {"key": key}, key=key)


async def claim(
    sessions: async_sessionmaker[AsyncSession],
    owner: str,
    *,
    limit: int = 10,
    lease: float = LEASE,
    max_attempts: int = 3,
    kind: str = "k",
) -> jobs.Claimed:
    async with transaction(sessions) as session:
        return await jobs.claim(
            session, kind, owner=owner, limit=limit, lease=lease, max_attempts=max_attempts
        )


async def rows(sessions: async_sessionmaker[AsyncSession]) -> list[Job]:
    async with sessions() as session:
        return list(await session.scalars(select(Job).order_by(Job.id)))


async def test_the_same_work_queued_twice_is_one_job(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add(sessions, "k", "a", "a", "b")
    await add(sessions, "k", "a")
    await add(sessions, "other", "a")
    assert [(job.kind, job.key, job.state) for job in await rows(sessions)] == [
        ("k", "a", "queued"),
        ("k", "b", "queued"),
        ("other", "a", "queued"),
    ]


async def test_concurrent_claims_never_take_the_same_job(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add(sessions, "k", *(f"j{n}" for n in range(40)))
    claimed = await asyncio.gather(*(claim(sessions, f"r{n}", limit=7) for n in range(8)))
    taken = [job.id for result in claimed for job in result.jobs]
    assert len(taken) == len(set(taken)) == 40
    assert {job.owner for job in await rows(sessions)} == {f"r{n}" for n in range(8)} - {
        result_owner
        for result_owner, result in zip((f"r{n}" for n in range(8)), claimed, strict=True)
        if not result.jobs
    }
    assert all(job.state == "running" and job.attempts == 1 for job in await rows(sessions))


async def test_a_job_whose_lease_lapsed_is_taken_over_and_the_old_owner_can_record_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add(sessions, "k", "a")
    [first] = (await claim(sessions, "dead", lease=0.05)).jobs
    assert (await claim(sessions, "alive")).jobs == []  # still under its lease
    await asyncio.sleep(0.1)
    [second] = (await claim(sessions, "alive")).jobs
    assert (second.id, second.owner, second.attempts) == (first.id, "alive", 2)
    assert second.last_error == jobs.OWNER_STOPPED
    async with transaction(sessions) as session:
        assert not await jobs.finish(session, first, owner="dead")
        assert not await jobs.retry(session, first, owner="dead", delay=0, error="late")
        assert await jobs.renew(session, owner="dead", job_ids=[first.id], lease=LEASE) == set()
    async with transaction(sessions) as session:
        assert await jobs.finish(session, second, owner="alive")
    assert await rows(sessions) == []


async def test_a_job_whose_owner_died_on_its_last_attempt_is_abandoned(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add(sessions, "k", "a")
    await claim(sessions, "dead", lease=0.05, max_attempts=1)
    await asyncio.sleep(0.1)
    claimed = await claim(sessions, "alive", max_attempts=1)
    assert claimed.jobs == []
    [job] = claimed.abandoned
    async with transaction(sessions) as session:
        assert await jobs.fail(session, job, owner="alive", error=jobs.OWNER_STOPPED)
    [row] = await rows(sessions)
    assert (row.state, row.attempts, row.last_error) == ("failed", 1, jobs.OWNER_STOPPED)


async def test_retries_wait_for_their_backoff_and_failed_jobs_can_be_retried(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add(sessions, "k", "a", "b")
    a, b = (await claim(sessions, "r")).jobs
    async with transaction(sessions) as session:
        assert await jobs.retry(session, a, owner="r", delay=3600, error="HTTP 503")
        assert await jobs.fail(session, b, owner="r", error="no")
    assert (await claim(sessions, "r")).jobs == []  # a waits an hour, b has failed
    async with sessions() as session:
        [stats] = await jobs.stats(session)
    assert (stats.kind, stats.queued, stats.running, stats.failed) == ("k", 1, 0, 1)
    assert stats.oldest_due_age is None
    async with transaction(sessions) as session:
        retried = await jobs.retry_failed(session, kind="k")
    assert [job.id for job in retried] == [b.id]
    [again] = (await claim(sessions, "r")).jobs
    assert (again.id, again.attempts) == (b.id, 1)


async def test_a_released_job_is_due_again_with_its_attempt_given_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add(sessions, "k", "a")
    [job] = (await claim(sessions, "stopping")).jobs
    async with transaction(sessions) as session:
        assert await jobs.release(session, job, owner="stopping")
    [again] = (await claim(sessions, "next")).jobs
    assert again.attempts == 1


class Flaky:
    """Fails its first `failures` runs, then succeeds; records what happened."""

    kind = "flaky"
    concurrency = 2
    max_attempts = 3
    backoff = 0.05

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs: list[int] = []
        self.given_up: list[str] = []

    async def run(self, job: Job) -> None:
        self.runs.append(job.attempts)
        if len(self.runs) <= self.failures:
            raise Retry(f"failure {len(self.runs)}")

    async def give_up(self, job: Job, error: str) -> None:
        self.given_up.append(error)


async def worker_with(
    sessions: async_sessionmaker[AsyncSession], *handlers: object, poll: float = 0.05
) -> JobWorker:
    worker = JobWorker(sessions, LocalBell(), owner="me", lease=LEASE, poll_interval=poll)
    worker.register(*handlers)  # type: ignore[arg-type]
    await worker.start()
    return worker


async def run_one(sessions: async_sessionmaker[AsyncSession], failures: int) -> Flaky:
    """Queue one `flaky` job failing its first `failures` runs; the handler once it settled."""
    handler = Flaky(failures=failures)
    worker = await worker_with(sessions, handler)
    try:
        await add(sessions, "flaky", "a")
        await worker.notify("flaky")
        await worker.settle(["flaky"])
    finally:
        await worker.aclose()
    return handler


async def test_the_worker_retries_with_backoff_until_the_job_succeeds(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    handler = await run_one(sessions, failures=2)
    assert handler.runs == [1, 2, 3]
    assert handler.given_up == []
    assert await rows(sessions) == []


async def test_the_worker_gives_up_after_the_last_attempt_and_keeps_the_job_failed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    handler = await run_one(sessions, failures=10)
    assert handler.runs == [1, 2, 3]
    assert handler.given_up == ["failure 3"]
    [row] = await rows(sessions)
    assert (row.state, row.attempts, row.last_error) == ("failed", 3, "failure 3")


async def test_a_ring_starts_a_job_at_once_without_waiting_for_the_poll(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    handler = Flaky(failures=0)
    worker = await worker_with(sessions, handler, poll=3600)
    try:
        await asyncio.sleep(0.05)  # the loop has looked once and now waits
        await add(sessions, "flaky", "a")
        await worker.notify("flaky")
        async with asyncio.timeout(5):
            await worker.settle(["flaky"])
    finally:
        await worker.aclose()
    assert handler.runs == [1]


async def test_an_idle_poll_only_reads_and_a_due_job_is_still_claimed(database_url: str) -> None:
    # Writes on one engine, the polls' reads on another: every transaction begun on the first
    # is a write (on SQLite `BEGIN IMMEDIATE`, the one lock every turn also waits for).
    engine, reader = create_engine(database_url), create_engine(database_url)
    writes = 0

    def count(connection: object) -> None:
        nonlocal writes
        writes += 1

    try:
        await migrate(engine)
        sessions = session_factory(engine)
        event.listen(engine.sync_engine, "begin", count)
        handler = Flaky(failures=0)
        worker = JobWorker(
            sessions,
            LocalBell(),
            owner="me",
            lease=LEASE,
            poll_interval=0.01,
            read_sessions=session_factory(reader, read_only=True),
        )
        worker.register(handler)
        await worker.start()
        try:
            await asyncio.sleep(0.3)  # ~30 polls with nothing due
            idle_writes = writes
            await add(sessions, "flaky", "a")
            async with asyncio.timeout(5):
                while not handler.runs:  # noqa: ASYNC110 (found by a poll, not a ring)
                    await asyncio.sleep(0.01)
                await worker.settle(["flaky"])
        finally:
            await worker.aclose()
    finally:
        await engine.dispose()
        await reader.dispose()
    assert idle_writes == 0
    assert handler.runs == [1]
    assert writes >= 3  # the job queued, claimed and finished


async def test_a_periodic_job_runs_again_after_its_interval(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    from kaiwa.runtime.jobs import Periodic

    runs: list[float] = []

    async def work() -> None:
        runs.append(asyncio.get_running_loop().time())

    periodic = Periodic("tick", 0.1, work)
    worker = await worker_with(sessions, periodic, poll=0.02)
    try:
        await periodic.ensure(sessions)
        await periodic.ensure(sessions)  # once per database, however many replicas ensure it
        async with asyncio.timeout(10):
            while len(runs) < 3:  # noqa: ASYNC110 - counting runs, not waiting for one event
                await asyncio.sleep(0.02)
    finally:
        await worker.aclose()
    assert all(later - earlier >= 0.09 for earlier, later in itertools.pairwise(runs))
    [row] = await rows(sessions)
    # Queued for its next run, or caught by the shutdown while recording this one (its lease
    # then lapses and another replica takes it).
    assert (row.kind, row.state in ("queued", "running")) == ("tick", True)
    assert isinstance(await periodic.run(row), Reschedule)


async def test_a_job_taken_over_elsewhere_is_cancelled_here(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    class Slow:
        kind = "slow"
        concurrency = 1
        max_attempts = 3
        backoff = 0.0

        async def run(self, job: Job) -> None:
            started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async def give_up(self, job: Job, error: str) -> None:
            raise AssertionError("not given up")

    worker = JobWorker(sessions, LocalBell(), owner="me", lease=0.3, poll_interval=0.05)
    worker.register(Slow())
    await worker.start()
    try:
        await add(sessions, "slow", "a")
        await worker.notify("slow")
        async with asyncio.timeout(10):
            await started.wait()
            # Another replica took it (this one looked dead to it).
            async with transaction(sessions) as session:
                await session.execute(
                    update(Job).values(owner="other", lease_until=now() + timedelta(hours=1))
                )
            await cancelled.wait()
    finally:
        await worker.aclose()
    [row] = await rows(sessions)
    assert (row.owner, row.state) == ("other", "running")
