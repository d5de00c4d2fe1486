"""Memory held by finished response logs in the in-process event log.

Fills a `MemoryEventLog` with `--logs` finished logs of a typical answer: `response.created`,
`--deltas` Japanese `output_text.delta`s and `output_text.completed` with the whole text, each
frame encoded as the emitter encodes it and appended one by one. Measures what the logs hold
twice: as the resident set's growth (`/proc/self/statm`, what the OS sees, allocator slack
included), then, on a fresh store, as the bytes `tracemalloc` traces to them (Python objects
only). Also checks that closing the store gives the traced memory back.

    python bench/log_memory.py                   # 1,000 logs of 300 deltas
    python bench/log_memory.py --logs 1000 --deltas 300
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tracemalloc
import uuid
from collections.abc import Callable

from replay import response_frames

from kaiwa.bus import LogStats, MemoryEventLog

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


async def fill(log: MemoryEventLog, logs: int, events: int) -> None:
    for _ in range(logs):
        response_id = str(uuid.uuid4())
        await log.create(response_id)
        frames = response_frames(events, response_id)
        for i, frame in enumerate(frames, start=1):
            await log.append(response_id, [frame], finish=i == len(frames))


async def measure(logs: int, events: int, meter: Callable[[], int]) -> tuple[int, int, LogStats]:
    """(bytes held with the logs, bytes still held after close, the store's stats)."""
    log = MemoryEventLog()
    gc.collect()
    before = meter()
    await fill(log, logs, events)
    gc.collect()
    held = meter() - before
    stats = log.stats()
    await log.close()
    gc.collect()
    return held, meter() - before, stats


def traced() -> int:
    return tracemalloc.get_traced_memory()[0]


async def run(logs: int, events: int) -> None:
    warm = MemoryEventLog()
    await fill(warm, 2, events)  # imports, pydantic's first-use caches, the event loop's own
    await warm.close()
    rss_held, _, stats = await measure(logs, events, rss)
    tracemalloc.start()
    traced_held, traced_left, _ = await measure(logs, events, traced)
    tracemalloc.stop()
    mib = 1024 * 1024
    print(f"{logs} finished logs of {events} events ({stats.frames} frames)")
    print(f"{'measure':<34} {'total MiB':>10} {'KiB/log':>9} {'B/frame':>8}")
    for name, total in (
        ("frame bytes (stats().bytes)", stats.bytes),
        ("traced by tracemalloc", traced_held),
        ("resident set growth (statm)", rss_held),
    ):
        print(
            f"{name:<34} {total / mib:>10.1f} {total / logs / 1024:>9.1f} "
            f"{total / stats.frames:>8.0f}"
        )
    print(f"traced memory left after close(): {traced_left / 1024:.1f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=1000, help="finished logs to hold")
    parser.add_argument("--deltas", type=int, default=300, help="delta events per log")
    args = parser.parse_args()
    asyncio.run(run(args.logs, args.deltas + 2))


if __name__ == "__main__":
    main()
