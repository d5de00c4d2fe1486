"""Time to replay a 10,000-event response log through the resume path.

In process, over one finished log of N events (`response.created`, Japanese
`output_text.delta`s, `output_text.completed` carrying the whole text), read from cursor 0:

* `MemoryEventLog.read` in a loop, alone;
* the SSE writer `kaiwa.server.sse.follow`, which the resume endpoint streams;
* live: the producer appends the N events one by one while `--readers` writers follow them.

Over HTTP (unless `--no-http`): a real `kaiwa serve` produces an N-event response with the
scripted model, then `GET /api/v1/chats/{chat_id}/responses/{response_id}/events` replays it
from the start, body read to `[DONE]`. Skipped, and said so, when the endpoint does not exist.

    python bench/replay.py                       # 10,000 events, 30 runs of each
    python bench/replay.py --events 10000 --runs 30 --readers 10 --no-http
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from kaiwa.bus import MemoryEventLog
from kaiwa.protocol import (
    DONE,
    OutputTextCompleted,
    OutputTextDelta,
    ResponseCreated,
    TokenUsage,
    encode_frame,
)
from kaiwa.protocol.sse import PING
from kaiwa.server.sse import follow

sys.path.insert(0, os.path.dirname(__file__))
from kaiwa_server import running_kaiwa

RESPONSE_ID = "0b8e4a4e-3c1a-4a59-9a57-5d3f2f1c9a10"
CHAT_ID = 4242
TEXT = (
    "営業時間は平日の午前九時から午後六時までです。土曜日は午前十時から午後四時まで営業して"
    "おり、日曜日と祝日はお休みをいただいております。ご来店の際は、事前にご予約いただくと"
    "待ち時間なくご案内できます。駐車場は店舗の裏手に十台分ございます。"
)


def deltas(n: int) -> list[str]:
    """`n` pieces of Japanese text, 1 to 4 characters each, as a model streams them."""
    pieces: list[str] = []
    at = 0
    while len(pieces) < n:
        size = 1 + len(pieces) % 4
        piece = (TEXT * 2)[at % len(TEXT) : at % len(TEXT) + size]
        pieces.append(piece)
        at += size
    return pieces


def response_frames(n: int, response_id: str = RESPONSE_ID) -> list[bytes]:
    """A whole response of `n` events, encoded as the emitter encodes them."""
    ids = {"response_id": response_id, "chat_id": CHAT_ID}
    pieces = deltas(n - 2)
    events = [
        ResponseCreated(
            **ids,
            agent_id="9f1c2d3e-0000-4000-8000-000000000001",
            model="openai/gpt-4o-mini",
            conversation_group_id="5d0c8a9e-7b61-4f0e-9a52-3c1e2b4d6f80",
            user_conversation_id=77,
        ),
        *(OutputTextDelta(**ids, delta=piece) for piece in pieces),
        OutputTextCompleted(
            **ids, final_text="".join(pieces), usage=TokenUsage(total_calls=1), status="completed"
        ),
    ]
    return [encode_frame(i, e.type, e.model_dump_json()) for i, e in enumerate(events, start=1)]


async def read_all(log: MemoryEventLog) -> int:
    cursor, size = 0, 0
    while True:
        read = await log.read(RESPONSE_ID, cursor, wait=15.0)
        assert read is not None
        size += sum(map(len, read.frames))
        cursor = read.last
        if read.finished:
            return size


async def follow_all(log: MemoryEventLog) -> int:
    size = 0
    async for chunk in follow(log, RESPONSE_ID, CHAT_ID, ping_interval=15.0, idle_timeout=90.0):
        size += len(chunk)
    return size


async def in_process(frames: list[bytes], runs: int, readers: int) -> dict[str, list[float]]:
    payload = sum(map(len, frames))
    log = MemoryEventLog()
    await log.create(RESPONSE_ID)
    for i, frame in enumerate(frames, start=1):
        await log.append(RESPONSE_ID, [frame], finish=i == len(frames))
    timings: dict[str, list[float]] = {}
    paths: list[tuple[str, Callable[[MemoryEventLog], Awaitable[int]], int]] = [
        ("MemoryEventLog.read loop", read_all, payload),
        ("sse.follow (read + writer)", follow_all, len(PING) + payload + len(DONE)),
    ]
    for name, path, expected in paths:
        timings[name] = []
        for run in range(runs + 2):  # two warm-up runs, not counted
            start = time.perf_counter()
            size = await path(log)
            elapsed = time.perf_counter() - start
            assert size == expected, (name, size, expected)
            if run >= 2:
                timings[name].append(elapsed)
    await log.close()
    live = f"live: append + {readers} follow()"
    timings[live] = [await live_run(frames, readers) for _ in range(max(3, runs // 5))]
    return timings


async def live_run(frames: list[bytes], readers: int) -> float:
    """The producer appends event by event, yielding between events as a real one does."""
    log = MemoryEventLog()
    await log.create(RESPONSE_ID)
    following = [asyncio.create_task(follow_all(log)) for _ in range(readers)]
    await asyncio.sleep(0)
    start = time.perf_counter()
    for i, frame in enumerate(frames, start=1):
        await log.append(RESPONSE_ID, [frame], finish=i == len(frames))
        await asyncio.sleep(0)
    await asyncio.gather(*following)
    elapsed = time.perf_counter() - start
    await log.close()
    return elapsed


def over_http(events: int, runs: int) -> tuple[int, list[float]] | str:
    """(events replayed, timings), or why it was skipped."""
    with running_kaiwa() as kaiwa:
        headers = {"x-api-key": kaiwa.api_key}
        with httpx.Client(base_url=kaiwa.base_url, headers=headers, timeout=60) as client:
            return replay_over_http(client, events, runs)


def replay_over_http(client: httpx.Client, events: int, runs: int) -> tuple[int, list[float]] | str:
    produced = produce_over_http(client, events)
    if isinstance(produced, str):
        return produced
    return time_replays(client, produced, runs)


@dataclass(frozen=True)
class Produced:
    """A finished answer of the scripted model, and how many events its stream carried."""

    chat_id: int
    response_id: str
    events: int


def produce_over_http(client: httpx.Client, events: int) -> Produced | str:
    """An answer of `events` events by the scripted model, streamed to its end; or why not."""
    # created + deltas + title + completed
    script = {"answer": [{"text": piece} for piece in deltas(events - 3)], "title": "営業時間"}
    meta = {"model_settings": {"script": script}}
    agent = {"name": "replay", "llm_model": "scripted/bench", "meta": meta}
    agent_id = data(client.post("/api/v1/agents", json=agent))["id"]
    data(client.post(f"/api/v1/agents/{agent_id}/publish"))
    chat = {"name": "replay", "agent_id": agent_id}
    chat_id = data(client.post("/api/v1/chats", json=chat))["id"]
    message = {"message": "営業時間は?", "agent_id": agent_id, "stream": True}
    with client.stream("POST", f"/api/v1/chats/{chat_id}/messages", json=message) as produced:
        response_id = produced.headers["x-kaiwa-response-id"]
        live = b"".join(produced.iter_raw())
    if not live.endswith(DONE):
        return "the produced stream did not end with [DONE]"
    return Produced(chat_id, response_id, live.count(b"\nevent: "))


def time_replays(
    client: httpx.Client, produced: Produced, runs: int
) -> tuple[int, list[float]] | str:
    """`runs` replays from cursor 0 to `[DONE]` (after two not counted): (events, seconds)."""
    url = f"/api/v1/chats/{produced.chat_id}/responses/{produced.response_id}/events"
    timings: list[float] = []
    for run in range(runs + 2):
        start = time.perf_counter()
        with client.stream("GET", url) as replay:
            if replay.status_code == 404 and b"Not Found" in replay.read():
                return f"no resume endpoint (GET {url} is 404)"
            replay.raise_for_status()
            replayed = b"".join(replay.iter_raw())
        elapsed = time.perf_counter() - start
        assert replayed.endswith(DONE), replayed[-200:]
        assert replayed.count(b"\nevent: ") == produced.events, "replay differs from the stream"
        if run >= 2:
            timings.append(elapsed)
    return produced.events, timings


def data(response: httpx.Response) -> Any:
    response.raise_for_status()
    return response.json()["data"]


def row(name: str, events: int, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    median = statistics.median(ordered) * 1000
    p99 = ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)] * 1000
    per_event = median * 1000 / events
    return f"{name:<30} {events:>7} {len(ordered):>5} {median:>10.2f} {p99:>9.2f} {per_event:>9.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="events in the log")
    parser.add_argument("--runs", type=int, default=30, help="timed replays of each path")
    parser.add_argument("--readers", type=int, default=10, help="writers following live")
    parser.add_argument("--no-http", action="store_true", help="skip the real server")
    args = parser.parse_args()
    frames = response_frames(args.events)
    size = sum(map(len, frames))
    print(f"log: {args.events} events, {size / 1024:.0f} KiB of frames")
    print(f"{'path':<30} {'events':>7} {'runs':>5} {'median ms':>10} {'p99 ms':>9} {'µs/event':>9}")
    timings = asyncio.run(in_process(frames, args.runs, args.readers))
    for name, seconds in timings.items():
        print(row(name, args.events, seconds))
    if args.no_http:
        return
    result = over_http(args.events, args.runs)
    if isinstance(result, str):
        print(f"HTTP replay skipped: {result}")
    else:
        events, seconds = result
        print(row("HTTP GET …/events (resume)", events, seconds))


if __name__ == "__main__":
    main()
