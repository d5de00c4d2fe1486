"""The job worker: runs this replica's share of the background work stored in `jobs`.

    worker = JobWorker(sessions, bus.bell, owner=bus.replicas.id, lease=30.0, poll_interval=2.0)
    worker.register(IndexJobs(...), BatchItemJobs(...), WebhookJobs(...))
    await worker.start()
    ...                                        # a route stores a job, commits, then:
    await worker.notify("index")               # every replica's idle worker looks at once
    ...
    worker.stop()                              # shutdown begins: take no more jobs
    await worker.aclose(grace=5.0)             # running jobs finish, or are given back

Each kind has a handler (`JobHandler`) that says how many of its jobs run at once here, how many
attempts a job gets and the backoff between them. A kind's loop claims what is due whenever a
slot is free and the bell rings (`kaiwa.bus.bell`), and at least every `poll_interval` seconds
(retries that come due, rings that were lost, other processes on one SQLite file). One loop
renews the lease of every job running here, every `lease / 3` seconds; a job whose lease it
could not renew was taken by another replica (this one was presumed dead): it is cancelled here.

A handler's `run` returns when the job is done (or `Reschedule(delay)` for a periodic job),
raises `Retry` (or any exception) to be tried again after the backoff, or `Release` to give the
job back untouched (this replica is stopping). When the attempts run out — or the replica
running the last one died — `give_up` records the failure where the job's work is shown (the
document, the batch item, the webhook record), then the job is kept `failed` for an operator to
retry (`kaiwa jobs retry`). `give_up` may be called twice for one job (a crash between it and
the job's own update): it must be idempotent, like `run`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.bus.bell import ANY_KIND, JobBell
from kaiwa.store import jobs as store
from kaiwa.store.db import transaction
from kaiwa.store.models import Job

__all__ = [
    "JobHandler",
    "JobWorker",
    "Notify",
    "Periodic",
    "Release",
    "Reschedule",
    "Retry",
]

Notify = Callable[[str], Awaitable[None]]
"""`JobWorker.notify`: after a transaction that queued jobs of a kind commits."""

logger = logging.getLogger(__name__)

_MAX_BACKOFF = 3600.0
SETTLE_TIMEOUT = 120.0
"""The most seconds `settle` waits."""


class Retry(Exception):
    """Try this job again later (if attempts remain); `error` is recorded on it."""

    def __init__(self, error: str, *, delay: float | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.delay = delay
        """None: the handler's backoff."""


class Release(Exception):
    """Give the job back as if never taken: this replica is stopping."""


@dataclass(frozen=True, slots=True)
class Reschedule:
    """What a periodic job's `run` returns: run it again in `delay` seconds."""

    delay: float


class JobHandler(Protocol):
    kind: str
    concurrency: int
    """Jobs of this kind running at once in this replica; 0: none run here."""
    max_attempts: int
    backoff: float
    """Seconds before the first retry; doubled for each further one."""

    async def run(self, job: Job) -> Reschedule | None: ...

    async def give_up(self, job: Job, error: str) -> None:
        """The job will not be tried again: record why, where its work is shown."""


class Periodic:
    """A job run every `interval` seconds by one replica at a time, whichever claims it.

    `ensure` queues it (once per database: its key is its kind); a run that fails is logged
    and the job is simply due again after `interval`."""

    concurrency = 1
    max_attempts = 100
    backoff = 1.0

    def __init__(self, kind: str, interval: float, work: Callable[[], Awaitable[object]]) -> None:
        self.kind = kind
        self.interval = interval
        self._work = work

    async def ensure(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        async with transaction(sessions) as session:
            await store.enqueue(session, self.kind, {}, key=self.kind)

    async def run(self, job: Job) -> Reschedule:
        try:
            await self._work()
        except Exception:
            logger.exception(
                "the periodic job %s failed; it runs again in %.0f s", self.kind, self.interval
            )
        return Reschedule(self.interval)

    async def give_up(self, job: Job, error: str) -> None:
        """Never: it reschedules itself whatever happens (but a replica dying 100 times)."""


class JobWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bell: JobBell,
        *,
        owner: str,
        lease: float,
        poll_interval: float,
        read_sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        """`read_sessions`: where a poll first looks whether anything is due (read-only ones:
        on SQLite an idle poll then never takes the write lock); `sessions` by default."""
        self._sessions = sessions
        self._read_sessions = read_sessions or sessions
        self._bell = bell
        self.owner = owner
        self._lease = lease
        self._poll_interval = poll_interval
        self._handlers: dict[str, JobHandler] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._running: dict[int, tuple[Job, asyncio.Task[None]]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False

    def register(self, *handlers: JobHandler) -> None:
        for handler in handlers:
            self._handlers[handler.kind] = handler
            self._wake[handler.kind] = asyncio.Event()

    async def start(self) -> None:
        self._bell.listen(self._heard)
        for kind, handler in self._handlers.items():
            if handler.concurrency > 0:
                self._loops.append(
                    asyncio.create_task(self._claim_forever(kind), name=f"jobs-{kind}")
                )
        self._loops.append(asyncio.create_task(self._renew_forever(), name="jobs-lease"))

    async def notify(self, kind: str) -> None:
        """Call after committing a job of `kind`: workers start it now, not at their poll."""
        await self._bell.ring(kind)

    def stop(self) -> None:
        """Take no more jobs; safe to call more than once."""
        self._stopping = True
        for event in self._wake.values():
            event.set()

    async def aclose(self, grace: float = 0.0) -> None:
        """Stop; jobs still running after `grace` seconds are cancelled and given back."""
        self.stop()
        tasks = [task for _, task in self._running.values()]
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for _, task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []

    async def settle(self, kinds: Iterable[str]) -> None:
        """Wait until no job of `kinds` is queued (or waiting to be retried) or running, on
        any replica: for tests and tools (bound it with `asyncio.timeout`)."""
        wanted = list(kinds)
        async with asyncio.timeout(SETTLE_TIMEOUT):
            while True:
                async with self._sessions() as session:
                    busy = await store.busy(session, wanted)
                if not busy and not any(job.kind in wanted for job, _ in self._running.values()):
                    return
                for kind in wanted:
                    self._heard(kind)
                await asyncio.sleep(0.02)

    def running(self, kind: str) -> int:
        return sum(1 for job, _ in self._running.values() if job.kind == kind)

    # -- claiming ----------------------------------------------------------------------------------

    def _heard(self, kind: str) -> None:
        events = self._wake.values() if kind == ANY_KIND else [self._wake.get(kind)]
        for event in events:
            if event is not None:
                event.set()

    async def _claim_forever(self, kind: str) -> None:
        handler = self._handlers[kind]
        wake = self._wake[kind]
        while not self._stopping:
            wake.clear()
            try:
                full = await self._claim(handler)
            except Exception:
                logger.exception("claiming %s jobs failed; trying again later", kind)
                full = False
            if full and not self._stopping:
                await asyncio.sleep(0)  # more may be due: look again once a slot frees up
                continue
            with suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await wake.wait()

    async def _claim(self, handler: JobHandler) -> bool:
        """Claim what fits; True when every free slot was filled (more may be waiting)."""
        free = handler.concurrency - self.running(handler.kind)
        if free <= 0:
            return False
        async with self._read_sessions() as reading:
            if not await store.any_due(await reading.connection(), handler.kind):
                return False
        async with transaction(self._sessions) as session:
            claimed = await store.claim(
                session,
                handler.kind,
                owner=self.owner,
                limit=free,
                lease=self._lease,
                max_attempts=handler.max_attempts,
            )
        for job in claimed.abandoned:
            logger.warning("%s job %d given up: %s", job.kind, job.id, store.OWNER_STOPPED)
            await self._give_up(handler, job, store.OWNER_STOPPED)
            async with transaction(self._sessions) as session:
                await store.fail(session, job, owner=self.owner, error=store.OWNER_STOPPED)
        for job in claimed.jobs:
            task = asyncio.create_task(self._run(handler, job), name=f"job-{job.kind}-{job.id}")
            self._running[job.id] = (job, task)
            task.add_done_callback(partial(self._done, job.id, job.kind))
        return len(claimed.jobs) == free and free > 0

    def _done(self, job_id: int, kind: str, _: object) -> None:
        self._running.pop(job_id, None)
        if (event := self._wake.get(kind)) is not None:
            event.set()

    # -- running -----------------------------------------------------------------------------------

    async def _run(self, handler: JobHandler, job: Job) -> None:
        try:
            outcome = await handler.run(job)
        except Release:
            await self._release(job)
            return
        except asyncio.CancelledError:
            if self._stopping:
                await asyncio.shield(self._release(job))
            raise
        except Retry as exc:
            await self._failed_attempt(handler, job, exc.error, exc.delay)
            return
        except Exception as exc:
            logger.exception("%s job %d failed (attempt %d)", job.kind, job.id, job.attempts)
            await self._failed_attempt(handler, job, _describe(exc), None)
            return
        try:
            async with transaction(self._sessions) as session:
                if isinstance(outcome, Reschedule):
                    await store.reschedule(session, job, owner=self.owner, delay=outcome.delay)
                else:
                    await store.finish(session, job, owner=self.owner)
        except Exception:
            # Its lease lapses and another replica runs it again: handlers are idempotent.
            logger.exception("could not record the end of %s job %d", job.kind, job.id)

    async def _failed_attempt(
        self, handler: JobHandler, job: Job, error: str, delay: float | None
    ) -> None:
        try:
            if job.attempts >= handler.max_attempts:
                await self._give_up(handler, job, error)
                async with transaction(self._sessions) as session:
                    await store.fail(session, job, owner=self.owner, error=error)
                return
            if delay is None:
                delay = min(handler.backoff * 2 ** (job.attempts - 1), _MAX_BACKOFF)
            async with transaction(self._sessions) as session:
                await store.retry(session, job, owner=self.owner, delay=delay, error=error)
        except Exception:
            logger.exception("could not record the failure of %s job %d", job.kind, job.id)

    async def _give_up(self, handler: JobHandler, job: Job, error: str) -> None:
        try:
            await handler.give_up(job, error)
        except Exception:
            logger.exception("recording that %s job %d failed did not work", job.kind, job.id)

    async def _release(self, job: Job) -> None:
        try:
            async with transaction(self._sessions) as session:
                await store.release(session, job, owner=self.owner)
        except Exception:
            logger.exception("could not give back %s job %d", job.kind, job.id)

    # -- leases ------------------------------------------------------------------------------------

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            ids = list(self._running)
            if not ids:
                continue
            try:
                async with transaction(self._sessions) as session:
                    kept = await store.renew(
                        session, owner=self.owner, job_ids=ids, lease=self._lease
                    )
            except Exception:
                logger.exception("renewing the leases of running jobs failed")
                continue
            for job_id in set(ids) - kept:
                entry = self._running.get(job_id)
                if entry is not None:
                    # Taken by another replica while this one was presumed dead: stop here.
                    logger.warning(
                        "%s job %d was taken over by another replica", entry[0].kind, job_id
                    )
                    entry[1].cancel()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
