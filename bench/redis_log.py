"""`RedisEventLog` against `MemoryEventLog`, on a `redis-server` of its own on loopback.

    .venv/bin/python bench/redis_log.py
    .venv/bin/python bench/redis_log.py --streams 100 --deltas 1000 --rate 200 --runs 20

Starts `redis-server` (no persistence) on a free port, stops it at the end, and measures:

(a) CPU seconds of this process per 1,000 deltas: `--streams` producers append `--deltas`
    Japanese deltas each (frames encoded as the emitter encodes them), at `--rate` deltas a
    second per stream, each at its own phase (0: as fast as they can), each followed by one
    reader on the same replica; `RedisEventLog` (its flusher, its subscriber hearing its own
    doorbells), once per `--linger` value, against `MemoryEventLog`, and the ratio. Redis's
    own CPU is shown beside it.
(b) a replica's resume of a finished 10,000-event log written by another, from cursor 0 to the
    end (median and worst of `--runs`); also of the same log while still open (not compacted).
(c) Redis memory (`MEMORY USAGE` of its keys) of one answer of 300 deltas, open and finished.

Targets, printed PASS/FAIL: (a) ≤ 1.2 ×, (b) ≤ 50 ms, (c) ≤ 64 KiB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable

import redis as redis_sync

from kaiwa.bus import EventLog, MemoryEventLog, RedisEventLog, RedisSubscriber, connect
from kaiwa.protocol import OutputTextCompleted, ResponseCreated, TokenUsage, encode_frame
from kaiwa.protocol.sse import DeltaFrames

TEXT = (
    "営業時間は平日の午前九時から午後六時までです。土曜日は午前十時から午後四時まで営業して"
    "おり、日曜日と祝日はお休みをいただいております。"
)
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def piece(i: int) -> str:
    at = i * 3 % len(TEXT)
    return TEXT[at : at + 1 + i % 3]


def answer(n: int, response_id: str, chat_id: int = 1) -> list[bytes]:
    """A whole answer of `n` events: `response.created`, deltas, `output_text.completed`."""
    ids = {"response_id": response_id, "chat_id": chat_id}
    created = ResponseCreated(
        **ids,
        agent_id="9f1c2d3e-0000-4000-8000-000000000001",
        model="openai/gpt-4o-mini",
        conversation_group_id="5d0c8a9e-7b61-4f0e-9a52-3c1e2b4d6f80",
        user_conversation_id=77,
    )
    deltas = DeltaFrames(response_id, chat_id)
    text = [piece(i) for i in range(n - 2)]
    done = OutputTextCompleted(
        **ids, final_text="".join(text), usage=TokenUsage(total_calls=1), status="completed"
    )
    return [
        encode_frame(1, created.type, created.model_dump_json()),
        *(deltas.encode(seq, t) for seq, t in enumerate(text, start=2)),
        encode_frame(n, done.type, done.model_dump_json()),
    ]


class Server:
    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--loglevel", "warning"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        with redis_sync.Redis(port=self.port) as client:
            for _ in range(500):
                try:
                    client.ping()
                    return
                except redis_sync.ConnectionError:
                    time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def cpu(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICK

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


class Replica:
    """A `RedisEventLog` with its own client and subscriber, as one server process has."""

    def __init__(self, url: str, prefix: str, linger: float = 0.0) -> None:
        self.redis = connect(url)
        self.subscriber = RedisSubscriber(self.redis)
        self.log = RedisEventLog(self.redis, self.subscriber, prefix=prefix, linger=linger)

    async def start(self) -> Replica:
        await self.subscriber.start()
        return self

    async def close(self) -> None:
        await self.log.close()
        await self.subscriber.aclose()
        await self.redis.aclose()


# -- (a) producing -------------------------------------------------------------------------------


async def produce(log: EventLog, response_id: str, deltas: int, rate: float) -> None:
    frames = DeltaFrames(response_id, 1)
    pause = 1 / rate if rate else 0.0
    loop = asyncio.get_running_loop()
    start = loop.time() + random.random() * pause  # each at its own phase, not in lockstep
    for seq in range(1, deltas + 1):
        await log.append(response_id, [frames.encode(seq, piece(seq))], finish=seq == deltas)
        if pause:
            await asyncio.sleep(max(0.0, start + seq * pause - loop.time()))
        else:
            await asyncio.sleep(0)


async def follow(log: EventLog, response_id: str) -> int:
    cursor = 0
    while True:
        read = await log.read(response_id, cursor, wait=15.0)
        assert read is not None
        cursor = read.last
        if read.finished:
            return cursor


async def producing(
    log: EventLog, streams: int, deltas: int, rate: float, flush: Callable[[], Awaitable[None]]
) -> float:
    """CPU seconds of this process for the whole run."""
    ids = [str(uuid.uuid4()) for _ in range(streams)]
    for response_id in ids:
        await log.create(response_id)
    await flush()
    cpu = time.process_time()
    readers = [asyncio.create_task(follow(log, response_id)) for response_id in ids]
    await asyncio.gather(*(produce(log, response_id, deltas, rate) for response_id in ids))
    assert await asyncio.gather(*readers) == [deltas] * streams
    return time.process_time() - cpu


async def cpu_per_thousand(
    server: Server, streams: int, deltas: int, rate: float, lingers: list[float]
) -> dict[str, float]:
    """CPU-s per 1,000 deltas: "memory", then "redis" and "redis-server" per linger."""
    total = streams * deltas / 1000
    memory = MemoryEventLog()
    await producing(memory, 10, 200, 0, _nothing)  # warm-up: imports, first-use caches
    cpu = {"memory": await producing(memory, streams, deltas, rate, _nothing) / total}
    await memory.close()
    for linger in lingers:
        replica = await Replica(server.url, f"a{uuid.uuid4().hex[:6]}:", linger).start()
        await producing(replica.log, 10, 200, 0, replica.log.flush)
        before = server.cpu()
        used = await producing(replica.log, streams, deltas, rate, replica.log.flush)
        cpu[f"redis {linger}"] = used / total
        cpu[f"redis-server {linger}"] = (server.cpu() - before) / total
        await replica.close()
    return cpu


async def _nothing() -> None:
    return None


# -- (b) resuming elsewhere ----------------------------------------------------------------------


async def resume(server: Server, events: int, runs: int) -> dict[str, list[float]]:
    prefix = f"b{uuid.uuid4().hex[:6]}:"
    producer = await Replica(server.url, prefix).start()
    elsewhere = await Replica(server.url, prefix).start()
    response_id = str(uuid.uuid4())
    frames = answer(events, response_id)
    await producer.log.create(response_id)
    await producer.log.append(response_id, frames[:-1])
    await producer.log.flush()
    timings: dict[str, list[float]] = {}
    for name, finish in (("open (stream)", False), ("finished (compacted)", True)):
        if finish:
            await producer.log.append(response_id, frames[-1:], finish=True)
        expected = events if finish else events - 1
        timings[name] = []
        for run in range(runs + 2):  # two warm-up runs
            started = time.perf_counter()
            cursor = 0
            while cursor < expected:
                read = await elsewhere.log.read(response_id, cursor, wait=1.0)
                assert read is not None
                cursor = read.last
            if run >= 2:
                timings[name].append(time.perf_counter() - started)
    await elsewhere.close()
    await producer.close()
    return timings


# -- (c) memory ----------------------------------------------------------------------------------


async def memory_of_an_answer(server: Server, deltas: int) -> tuple[int, int]:
    prefix = f"c{uuid.uuid4().hex[:6]}:"
    replica = await Replica(server.url, prefix).start()
    response_id = str(uuid.uuid4())
    frames = answer(deltas + 2, response_id)
    await replica.log.create(response_id)
    for frame in frames[:-1]:
        await replica.log.append(response_id, [frame])
    await replica.log.flush()
    with redis_sync.Redis(port=server.port) as client:

        def usage() -> int:
            return sum(client.memory_usage(k, samples=0) or 0 for k in client.keys(f"{prefix}*"))

        open_bytes = usage()
        await replica.log.append(response_id, frames[-1:], finish=True)
        finished_bytes = usage()
    await replica.close()
    return open_bytes, finished_bytes


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--deltas", type=int, default=1000, help="deltas per stream")
    parser.add_argument("--rate", type=float, default=200, help="deltas/s per stream (0: max)")
    parser.add_argument("--events", type=int, default=10_000, help="events of the resumed log")
    parser.add_argument("--runs", type=int, default=20, help="timed resumes")
    parser.add_argument(
        "--linger",
        default="0,0.002",
        help="RedisEventLog(linger=…) values for (a), comma-separated",
    )
    args = parser.parse_args()
    server = Server()
    try:
        lingers = [float(value) for value in args.linger.split(",")]
        cpu = await cpu_per_thousand(server, args.streams, args.deltas, args.rate, lingers)
        timings = await resume(server, args.events, args.runs)
        open_bytes, finished_bytes = await memory_of_an_answer(server, 300)
    finally:
        server.stop()
    pace = f"{args.rate:g}/s each" if args.rate else "unpaced"
    print(f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores")
    print(f"{'measure':<58} {'value':>10}  target")
    print(f"(a) {args.streams} streams × {args.deltas} deltas, {pace}, a reader each:")
    print(f"{'    MemoryEventLog: CPU-s per 1,000 deltas':<58} {cpu['memory']:>10.4f}")
    for linger in lingers:
        ratio = cpu[f"redis {linger}"] / cpu["memory"]
        name = f"    RedisEventLog(linger={linger:g}): CPU-s per 1,000 deltas"
        print(f"{name:<58} {cpu[f'redis {linger}']:>10.4f}")
        print(f"{'      ratio':<58} {ratio:>9.2f}×  ≤ 1.2× {verdict(ratio <= 1.2)}")
        server_cpu = cpu[f"redis-server {linger}"]
        print(f"{'      (redis-server: CPU-s per 1,000 deltas)':<58} {server_cpu:>10.4f}")
    print(f"(b) resume of a {args.events:,}-event log on another replica, cursor 0 to the end:")
    for name, seconds in timings.items():
        median, worst = statistics.median(seconds) * 1000, max(seconds) * 1000
        target = f"≤ 50 ms {verdict(median <= 50)}" if "finished" in name else ""
        print(
            f"{'    ' + name + ', median / worst (ms)':<58} {median:>5.1f} / {worst:<5.1f} {target}"
        )
    print("(c) Redis memory of an answer of 300 deltas (MEMORY USAGE, KiB):")
    print(f"{'    open (a stream)':<58} {open_bytes / 1024:>10.1f}")
    finished = finished_bytes / 1024
    print(f"{'    finished (compacted)':<58} {finished:>10.1f}  ≤ 64 {verdict(finished <= 64)}")


if __name__ == "__main__":
    asyncio.run(main())
