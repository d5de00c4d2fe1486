"""`kaiwa jobs`: the background work queue, on the database directly.

    kaiwa jobs [--json]                          depth and age of the queue, per kind
    kaiwa jobs failed [--kind K] [--json]        jobs whose attempts ran out, with their error
    kaiwa jobs retry (--all | --kind K | ID…)    queue failed jobs again, with fresh attempts

A retried job is picked up at the workers' next poll (`KAIWA_JOB_POLL_INTERVAL`). What it does
again is idempotent: a document already indexed, an item already answered or a webhook already
delivered is left as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from kaiwa.cli_support import sync

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from kaiwa.store.jobs import KindStats

__all__ = ["add_commands"]

FAILED_SHOWN = 100


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobs = commands.add_parser("jobs", help="the background job queue: depth, failures, retry")
    jobs.add_argument("--json", action="store_true", help="print JSON for scripts")
    jobs.set_defaults(run=sync(_stats))
    below = jobs.add_subparsers(title="commands")
    failed = below.add_parser("failed", help="list failed jobs, oldest first")
    failed.add_argument("--kind", help="only jobs of this kind (index, batch_item, webhook…)")
    failed.add_argument("--json", action="store_true")
    failed.set_defaults(run=sync(_failed))
    retry = below.add_parser("retry", help="queue failed jobs again")
    retry.add_argument("job_ids", metavar="ID", type=int, nargs="*", help="these failed jobs")
    retry.add_argument("--kind", help="every failed job of this kind")
    retry.add_argument("--all", action="store_true", help="every failed job")
    retry.add_argument("--json", action="store_true")
    retry.set_defaults(run=sync(_retry))


async def _stats(args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import jobs

    rows = await jobs.stats(session)
    if args.json:
        print(json.dumps([_stats_out(row) for row in rows], ensure_ascii=False))
        return 0
    if not rows:
        print("no jobs")
        return 0
    print(f"{'kind':<24}{'queued':>8}{'running':>9}{'failed':>8}  oldest due")
    for row in rows:
        age = "-" if row.oldest_due_age is None else _age(row.oldest_due_age)
        print(f"{row.kind:<24}{row.queued:>8}{row.running:>9}{row.failed:>8}  {age}")
    return 0


def _stats_out(row: KindStats) -> dict[str, object]:
    return asdict(row)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


async def _failed(args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import jobs
    from kaiwa.store.db import iso

    rows = await jobs.list_jobs(session, state="failed", kind=args.kind, limit=FAILED_SHOWN)
    out = [
        {
            "id": job.id,
            "kind": job.kind,
            "payload": job.payload,
            "attempts": job.attempts,
            "last_error": job.last_error,
            "updated_at": iso(job.updated_at),
        }
        for job in rows
    ]
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return 0
    if not out:
        print("no failed jobs")
    for job in out:
        payload = json.dumps(job["payload"], ensure_ascii=False)
        print(f"{job['id']:>6}  {job['kind']:<12} {payload}  after {job['attempts']} attempts")
        print(f"        {job['last_error']}")
    return 0


async def _retry(args: argparse.Namespace, session: AsyncSession) -> int:
    from kaiwa.store import jobs

    if not (args.job_ids or args.kind or args.all):
        print("kaiwa jobs retry: name the jobs (IDs), a --kind, or --all", file=sys.stderr)
        return 2
    retried = await jobs.retry_failed(session, kind=args.kind, job_ids=args.job_ids)
    missing = sorted(set(args.job_ids) - {job.id for job in retried})
    if args.json:
        print(json.dumps({"retried": [job.id for job in retried], "not_failed": missing}))
    else:
        print(f"queued again: {len(retried)} job{'s' if len(retried) != 1 else ''}")
        if missing:
            print(f"not failed (or unknown): {', '.join(map(str, missing))}")
    return 1 if missing else 0
