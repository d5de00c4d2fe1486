"""Several processes on one database run each job once, and take over the jobs of one that is
killed: SQLite (processes on one file, through `BEGIN IMMEDIATE`) and PostgreSQL (`SKIP LOCKED`).

Serving with several processes on one SQLite file is another matter (without Redis each process
takes the others' answers for orphans): the job queue itself is what is shown here.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.store import jobs
from kaiwa.store.db import create_engine, migrate, session_factory, transaction
from kaiwa.store.models import Job

REPO = Path(__file__).resolve().parents[2]
JOBS = 120


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    await migrate(engine)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@contextmanager
def workers(database_url: str, log: Path, count: int) -> Iterator[list[subprocess.Popen[str]]]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.job_worker", database_url, str(log)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


async def remaining(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Job)) or 0)


async def drained(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with asyncio.timeout(90):
        while await remaining(sessions):  # noqa: ASYNC110 - other processes empty the table
            await asyncio.sleep(0.1)


def lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()]


async def test_two_processes_run_every_job_once(
    database_url: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    log = tmp_path / "log"
    with workers(database_url, log, 2):
        async with transaction(sessions) as session:
            for n in range(JOBS):
                await jobs.enqueue(session, "note", {"n": n, "sleep": 0.01})
        await drained(sessions)
    ran = Counter(n for _, n, *_ in lines(log))
    assert sorted(ran) == sorted(str(n) for n in range(JOBS))
    assert set(ran.values()) == {1}
    assert len({pid for *_, pid in lines(log)}) == 2, "both processes took jobs"


async def test_the_jobs_of_a_killed_process_are_run_by_the_other(
    database_url: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    log = tmp_path / "log"
    with workers(database_url, log, 2) as (victim, survivor):
        async with transaction(sessions) as session:
            for n in range(40):
                await jobs.enqueue(session, "note", {"n": n, "sleep": 0.3})
        async with asyncio.timeout(30):
            # Until the victim has run a job (it is in the thick of it), polling its log file.
            while not log.exists() or str(victim.pid) not in log.read_text():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        async with sessions() as session:
            held = set(
                await session.scalars(
                    select(Job.id).where(
                        Job.owner == f"worker-{victim.pid}", Job.state == "running"
                    )
                )
            )
        assert held, "the victim holds jobs when it is killed"
        victim.kill()
        victim.wait()
        await drained(sessions)
        assert survivor.poll() is None
    ran = Counter(n for _, n, *_ in lines(log))
    assert sorted(ran) == sorted(str(n) for n in range(40)), "every job ran"
    # At least once: only a job the killed process was running (and had maybe finished
    # without recording it) may have run twice.
    twice = {int(job_id) for job_id, n, *_ in lines(log) if ran[n] > 1}
    assert twice <= held
    assert not any("gave-up" in line for line in log.read_text().splitlines())
