"""A process that runs kaiwa's job worker on a database, for the multi-process job tests.

    python -m tests.fakes.job_worker DATABASE_URL LOG_PATH [--concurrency 4] [--lease 1.0]

It runs `note` jobs until SIGTERM (or SIGKILL): each one appends `<job id> <payload n>
<pid>` to LOG_PATH (one `write` of one line with O_APPEND: whole lines from several processes),
after `payload["sleep"]` seconds. It prints `ready` once its worker is started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from kaiwa.bus.bell import LocalBell
from kaiwa.runtime.jobs import JobWorker
from kaiwa.store.db import create_engine, session_factory
from kaiwa.store.models import Job


class Note:
    kind = "note"
    max_attempts = 3
    backoff = 0.1

    def __init__(self, log: str, concurrency: int) -> None:
        self.concurrency = concurrency
        self._log = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def run(self, job: Job) -> None:
        await asyncio.sleep(float(job.payload.get("sleep", 0.0)))
        os.write(self._log, f"{job.id} {job.payload['n']} {os.getpid()}\n".encode())

    async def give_up(self, job: Job, error: str) -> None:
        os.write(self._log, f"{job.id} {job.payload['n']} {os.getpid()} gave-up\n".encode())


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("log")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease", type=float, default=1.0)
    args = parser.parse_args()
    engine = create_engine(args.database_url)
    worker = JobWorker(
        session_factory(engine),
        LocalBell(),
        owner=f"worker-{os.getpid()}",
        lease=args.lease,
        poll_interval=0.05,
    )
    worker.register(Note(args.log, args.concurrency))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await worker.start()
    print("ready", flush=True)
    await stop.wait()
    await worker.aclose(grace=5.0)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
