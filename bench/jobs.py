"""The job queue: how soon a queued job starts, how many a replica runs per second, and how much
memory indexing a 20 MiB document takes.

    .venv/bin/python bench/jobs.py                 # SQLite, and PostgreSQL + Redis on loopback
    .venv/bin/python bench/jobs.py --skip-postgres --jobs 2000

1. Claim-to-start latency: a job is queued (its transaction commits), the bell is rung, and the
   time until its handler starts is taken, one job at a time (an idle worker: the latency a user
   sees when work is rare). SQLite rings in process; PostgreSQL rings through Redis pub/sub, as
   replicas do.
2. Throughput: `--jobs` no-op jobs queued at once, then drained by one worker running 16 at a
   time; jobs per second from the first claim to the last job's end.
3. Indexing memory: a real `kaiwa serve` (SQLite, no embedder) indexes a 20 MiB text document
   uploaded through the API; its peak resident memory (VmHWM, reset just before the upload)
   above what it held before, and how long indexing took.

PostgreSQL is `postgresql://postgres@127.0.0.1:5432/postgres` (a database is created and dropped
for the run); Redis is 127.0.0.1:6379 (channel names are prefixed by a random id).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kaiwa_server import running_kaiwa

from kaiwa.bus.bell import JobBell, LocalBell
from kaiwa.runtime.jobs import JobWorker
from kaiwa.store import jobs
from kaiwa.store.db import create_engine, migrate, session_factory, transaction
from kaiwa.store.models import Job

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


class Timed:
    """A no-op handler that notes when each job starts and ends."""

    kind = "bench"
    max_attempts = 1
    backoff = 0.0

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.started: dict[str, float] = {}
        self.ended = 0
        self.all_done = asyncio.Event()
        self.expected = 0

    async def run(self, job: Job) -> None:
        self.started[str(job.payload["n"])] = time.perf_counter()
        self.ended += 1
        if self.ended >= self.expected:
            self.all_done.set()

    async def give_up(self, job: Job, error: str) -> None:
        raise RuntimeError(error)


@asynccontextmanager
async def database(kind: str) -> AsyncIterator[tuple[str, Callable[[], JobBell]]]:
    """A fresh database URL and a maker of the bell replicas would use on it."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite+aiosqlite:///{folder}/bench.db", LocalBell
        return
    name = f"kaiwa_bench_jobs_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    from redis.asyncio import Redis

    from kaiwa.bus.bell import RedisBell
    from kaiwa.bus.subscriber import RedisSubscriber

    redis = Redis.from_url(REDIS_URL)
    subscriber = RedisSubscriber(redis)
    await subscriber.start()
    prefix = f"bench-{uuid.uuid4().hex[:6]}:"
    try:
        yield (
            f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}",
            lambda: RedisBell(redis, subscriber, prefix=prefix),
        )
    finally:
        await subscriber.aclose()
        await redis.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def latency(kind: str, samples: int) -> list[float]:
    async with database(kind) as (url, bell):
        engine = create_engine(url)
        await migrate(engine)
        sessions = session_factory(engine)
        handler = Timed(concurrency=4)
        # A slow poll: only the bell can start a job promptly.
        worker = JobWorker(sessions, bell(), owner="bench", lease=30.0, poll_interval=30.0)
        worker.register(handler)
        await worker.start()
        await asyncio.sleep(0.2)
        waits = []
        try:
            for n in range(samples):
                handler.expected = n + 1
                handler.all_done.clear()
                async with transaction(sessions) as session:
                    await jobs.enqueue(session, "bench", {"n": n})
                queued = time.perf_counter()
                await worker.notify("bench")
                async with asyncio.timeout(10):
                    await handler.all_done.wait()
                waits.append(handler.started[str(n)] - queued)
                await asyncio.sleep(random.uniform(0.005, 0.02))
        finally:
            await worker.aclose()
            await engine.dispose()
        return waits


async def throughput(kind: str, count: int) -> float:
    async with database(kind) as (url, bell):
        engine = create_engine(url)
        await migrate(engine)
        sessions = session_factory(engine)
        async with transaction(sessions) as session:
            for n in range(count):
                await jobs.enqueue(session, "bench", {"n": n})
        handler = Timed(concurrency=16)
        handler.expected = count
        worker = JobWorker(sessions, bell(), owner="bench", lease=30.0, poll_interval=1.0)
        worker.register(handler)
        began = time.perf_counter()
        await worker.start()
        try:
            async with asyncio.timeout(600):
                await handler.all_done.wait()
                await worker.settle(["bench"])
        finally:
            await worker.aclose()
            await engine.dispose()
        return count / (time.perf_counter() - began)


def _status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _document(size: int) -> bytes:
    """Mixed Japanese and English prose, `size` bytes of UTF-8."""
    rng = random.Random(7)
    words = ["営業時間", "配送", "返品", "料金", "定期便", "解約", "shipping", "returns", "plan"]
    lines = []
    total = 0
    while total < size:
        line = "".join(rng.choice(words) for _ in range(12)) + "。\n"
        lines.append(line)
        total += len(line.encode())
    return "".join(lines).encode()[:size].decode("utf-8", "ignore").encode()


def indexing_memory(megabytes: int) -> tuple[float, float, float]:
    """(resident MiB before, peak growth MiB, seconds to ready)."""
    env = {"KAIWA_EMBEDDINGS__PROVIDER": "none", "KAIWA_MAX_UPLOAD_BYTES": str(64 << 20)}
    with running_kaiwa(env=env) as kaiwa:
        headers = {"x-api-key": kaiwa.api_key}
        with httpx.Client(base_url=kaiwa.base_url, headers=headers, timeout=120) as client:
            kb = client.post("/api/v1/knowledge-bases", json={"name": "bench"}).json()["data"]
            warm = client.post(
                f"/api/v1/knowledge-bases/{kb['id']}/documents",
                files={"file": ("warm.txt", _document(1 << 20), "text/plain")},
            ).json()["data"]
            _ready(client, kb["id"], warm["id"])
            data = _document(megabytes << 20)
            Path(f"/proc/{kaiwa.pid}/clear_refs").write_text("5")
            before = _status(kaiwa.pid, "VmRSS")
            began = time.perf_counter()
            document = client.post(
                f"/api/v1/knowledge-bases/{kb['id']}/documents",
                files={"file": ("big.txt", data, "text/plain")},
            ).json()["data"]
            _ready(client, kb["id"], document["id"])
            took = time.perf_counter() - began
            peak = _status(kaiwa.pid, "VmHWM")
    return before, peak - before, took


def _ready(client: httpx.Client, kb_id: str, document_id: str) -> None:
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        document = client.get(f"/api/v1/knowledge-bases/{kb_id}/documents/{document_id}")
        status = document.json()["data"]["status"]
        if status != "processing":
            assert status == "ready", document.json()
            return
        time.sleep(0.2)
    raise TimeoutError(document_id)


def _ms(values: list[float], q: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300, help="latency samples per database")
    parser.add_argument("--jobs", type=int, default=5000, help="no-op jobs for the throughput")
    parser.add_argument("--document-mib", type=int, default=20)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    kinds = ["sqlite"] if args.skip_postgres else ["sqlite", "postgresql"]
    print("\nclaim-to-start latency (idle worker, bell rung after commit)")
    for kind in kinds:
        waits = await latency(kind, args.samples)
        print(
            f"  {kind:<11} p50 {_ms(waits, 0.5)}  p99 {_ms(waits, 0.99)}  "
            f"mean {statistics.mean(waits) * 1000:.1f} ms  ({len(waits)} jobs)"
        )
    print(f"\nthroughput: {args.jobs} no-op jobs, one worker, 16 at a time")
    for kind in kinds:
        rate = await throughput(kind, args.jobs)
        print(f"  {kind:<11} {rate:,.0f} jobs/s")
    print(f"\nindexing a {args.document_mib} MiB text document (SQLite, lexical index only)")
    before, growth, took = await asyncio.to_thread(indexing_memory, args.document_mib)
    print(
        f"  resident before {before:.0f} MiB, peak growth {growth:.0f} MiB, ready in {took:.1f} s"
    )


if __name__ == "__main__":
    asyncio.run(main())
