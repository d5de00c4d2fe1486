"""Many concurrent SSE readers against kaiwa or the floor, timing every event's arrival.

Each stream posts one message to its own chat and reads the answer. Per stream it records the
time to `response.created` and to the first delta; per model token it records the added latency,
its arrival at the reader minus its emission by the fake model (the `<t=...>` stamp in the
text). The target server's CPU-seconds over the run come from `/proc/<pid>/stat`.

    python bench/load.py --url http://127.0.0.1:8912 --streams 100     # the floor
    python bench/load.py --url http://127.0.0.1:8000 --streams 100 \\
        --api-key KEY --agent-id AGENT                                  # kaiwa (agent on fake/)

Starts are spread evenly over `--ramp` seconds (so the streams do not emit in lockstep); a
paced arrival rate of r messages per second is `--ramp N/r`. `summarize` also reports the
*plateau*: the time when every stream had its first delta and none had its last yet, so all of
them were open at once; latencies of the tokens emitted then are the ones "at N concurrent
streams". Without a plateau (answers too short for the starts to overlap) `concurrent_peak`
says how many streams were ever open together.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

from kaiwa.protocol import SSEDecoder

_STAMP = re.compile(r"<t=([0-9.]+)>")
_DELTA = "response.output_text.delta"


@dataclass(frozen=True)
class Target:
    """Where to send: `chat_ids[i]` is stream i's chat; `body` is sent as is to each."""

    name: str
    base_url: str
    chat_ids: Sequence[int]
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)
    pid: int | None = None
    """The server process whose CPU time is measured."""
    also: tuple[int, ...] = ()
    """Other processes whose CPU time counts as the server's (e.g. its redis-server)."""


@dataclass
class StreamResult:
    created: float | None = None
    """Seconds from sending the request to `response.created`."""
    first_delta: float | None = None
    latencies: list[float] = field(default_factory=list)
    """Per model token: arrival at the reader minus emission by the model, seconds."""
    emitted: list[float] = field(default_factory=list)
    """Per model token, as `latencies`: its emission by the model, wall-clock seconds."""
    opened_at: float | None = None
    """Wall-clock time of `response.created`."""
    closed_at: float | None = None
    """Wall-clock time the stream ended (or failed)."""
    delta_events: int = 0
    error: str | None = None


@dataclass
class RunResult:
    streams: list[StreamResult]
    wall: float
    server_cpu: float | None
    loader_cpu: float


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process (not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(
    target: Target,
    streams: int,
    *,
    ramp: float,
    stream_limit: float,
    hold: asyncio.Event | None = None,
    on_created: Callable[[], object] | None = None,
) -> RunResult:
    """`streams` concurrent answers; each must end within `stream_limit` seconds of its start.

    With `hold`, each stream waits after `response.created` (reading nothing more) until `hold`
    is set, then drops its connection. `on_created` is called on each `response.created`.
    """
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=stream_limit)
    loader_start = resource.getrusage(resource.RUSAGE_SELF)
    pids = (target.pid, *target.also) if target.pid else ()
    cpu_start = sum(cpu_seconds(pid) for pid in pids)
    start = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        tasks = [
            _stream(
                session, target, target.chat_ids[i], ramp * i / max(streams, 1), hold, on_created
            )
            for i in range(streams)
        ]
        results = await asyncio.gather(*tasks)
    wall = time.monotonic() - start
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_start if pids else None
    loader_end = resource.getrusage(resource.RUSAGE_SELF)
    loader_cpu = (loader_end.ru_utime + loader_end.ru_stime) - (
        loader_start.ru_utime + loader_start.ru_stime
    )
    return RunResult(list(results), wall, cpu, loader_cpu)


async def _stream(
    session: aiohttp.ClientSession,
    target: Target,
    chat_id: int,
    delay: float,
    hold: asyncio.Event | None = None,
    on_created: Callable[[], object] | None = None,
) -> StreamResult:
    await asyncio.sleep(delay)
    result = StreamResult()
    decoder = SSEDecoder()
    url = f"{target.base_url}/api/v1/chats/{chat_id}/messages"
    sent = time.monotonic()
    try:
        async with session.post(url, json=target.body, headers=target.headers) as response:
            if response.status != 200:
                result.error = f"HTTP {response.status}: {(await response.text())[:200]}"
                return result
            chunks = response.content.iter_any()
            while True:
                if hold is not None and result.created is not None:
                    await hold.wait()
                    break  # drop the connection
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                arrived = time.time()
                now = time.monotonic() - sent
                for event in decoder.decode(chunk):
                    if event.event == _DELTA:
                        result.delta_events += 1
                        if result.first_delta is None:
                            result.first_delta = now
                        for stamp in _STAMP.findall(event.data):
                            emitted = float(stamp)
                            result.emitted.append(emitted)
                            result.latencies.append(arrived - emitted)
                    elif event.event == "response.created" and result.created is None:
                        result.created = now
                        result.opened_at = arrived
                        if on_created is not None:
                            on_created()
                    elif event.event == "response.error":
                        result.error = event.data[:200]
    except (aiohttp.ClientError, TimeoutError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.closed_at = time.time()
    return result


async def release_when_held(model_url: str, tag: str, n: int, *, patience: float = 5.0) -> int:
    """Release the streams held under `tag` by `fake_model.py` once `n` wait there, or once
    their number has not grown for `patience` seconds (some failed). Returns how many waited."""
    base = model_url.removesuffix("/v1")
    waiting, since, grew_at = 0, 0, time.monotonic()
    async with aiohttp.ClientSession(base) as session:
        while waiting < n and time.monotonic() - grew_at < patience:
            await asyncio.sleep(0.1)
            async with session.get(f"/hold/{tag}") as r:
                waiting = int(await r.text())
            if waiting > since:
                since, grew_at = waiting, time.monotonic()
        async with session.post(f"/hold/{tag}") as r:
            return int(await r.text())


def plateau(result: RunResult) -> tuple[float, float] | None:
    """(start, end), wall-clock, of the time every stream was between its first and last delta;
    None when there was no such time, or a stream failed or had no delta."""
    streams = result.streams
    if not streams or any(s.error or not s.emitted for s in streams):
        return None
    start = max(s.emitted[0] + s.latencies[0] for s in streams)  # first arrivals
    end = min(s.emitted[-1] + s.latencies[-1] for s in streams)  # last arrivals
    return (start, end) if end > start else None


def concurrent_peak(result: RunResult) -> int:
    """The most streams open (from `response.created` to their end) at one time."""
    edges = sorted(
        edge
        for s in result.streams
        if s.opened_at is not None and s.closed_at is not None
        for edge in ((s.opened_at, 1), (s.closed_at, -1))
    )
    peak = open_ = 0
    for _, step in edges:
        open_ += step
        peak = max(peak, open_)
    return peak


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def summarize(result: RunResult, *, ttft: float) -> dict[str, float | int | None]:
    """The figures a report compares: times in milliseconds, CPU in seconds.

    `added_ms_*` are over every token; `plateau_*` only over the tokens emitted while every
    stream was open (see `plateau`), None without a plateau.
    """
    latencies = [x for s in result.streams for x in s.latencies]
    created = [s.created for s in result.streams if s.created is not None]
    first = [s.first_delta - ttft for s in result.streams if s.first_delta is not None]
    deltas = len(latencies)
    window = plateau(result)
    during: list[float] = []
    if window is not None:
        start, end = window
        for s in result.streams:
            pairs = zip(s.emitted, s.latencies, strict=True)
            during.extend(x for t, x in pairs if start <= t <= end)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    cpu = result.server_cpu
    cpu_per_1000 = None if cpu is None or not deltas else round(cpu / deltas * 1000, 4)
    return {
        "streams": len(result.streams),
        "errors": sum(1 for s in result.streams if s.error),
        "deltas": deltas,
        "delta_events": sum(s.delta_events for s in result.streams),
        "wall_s": round(result.wall, 3),
        "deltas_per_s": round(deltas / result.wall, 1) if result.wall else None,
        "server_cpu_s": None if cpu is None else round(cpu, 3),
        "cpu_s_per_1000_deltas": cpu_per_1000,
        "loader_cpu_s": round(result.loader_cpu, 3),
        "concurrent_peak": concurrent_peak(result),
        "plateau_s": None if window is None else round(window[1] - window[0], 3),
        "plateau_deltas": len(during) if window is not None else None,
        "plateau_added_ms_p50": ms(percentile(during, 0.5)),
        "plateau_added_ms_p99": ms(percentile(during, 0.99)),
        "added_ms_p50": ms(percentile(latencies, 0.5)),
        "added_ms_p99": ms(percentile(latencies, 0.99)),
        "added_ms_mean": ms(statistics.fmean(latencies)) if latencies else None,
        "created_ms_p50": ms(percentile(created, 0.5)),
        "created_ms_p99": ms(percentile(created, 0.99)),
        "first_delta_over_ttft_ms_p50": ms(percentile(first, 0.5)),
        "first_delta_over_ttft_ms_p99": ms(percentile(first, 0.99)),
    }


def first_errors(result: RunResult, n: int = 3) -> list[str]:
    return [s.error for s in result.streams if s.error][:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8912")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--model", default="bench", help="model name, for the floor")
    parser.add_argument("--api-key", help="kaiwa: a key; chats are created for the agent")
    parser.add_argument("--agent-id", help="kaiwa: a published agent on the fake provider")
    parser.add_argument("--pid", type=int, help="the server's process id, to measure its CPU")
    parser.add_argument("--ttft", type=float, default=0.2, help="the model's, to subtract")
    parser.add_argument("--ramp", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    if args.api_key and args.agent_id:
        target = asyncio.run(
            kaiwa_target(args.url, args.api_key, args.agent_id, args.streams, pid=args.pid)
        )
    else:
        target = Target(
            "floor",
            args.url,
            list(range(1, args.streams + 1)),
            {"message": "bench", "model": args.model},
            pid=args.pid,
        )
    result = asyncio.run(run(target, args.streams, ramp=args.ramp, stream_limit=args.timeout))
    print(json.dumps(summarize(result, ttft=args.ttft), indent=2))
    for error in first_errors(result):
        print("error:", error)


async def kaiwa_target(
    base_url: str,
    api_key: str,
    agent_id: str,
    streams: int,
    *,
    pid: int | None = None,
    chats: ChatPool | None = None,
    body: dict[str, object] | None = None,
) -> Target:
    """A target on `streams` chats of `agent_id` (from `chats` when given: it reuses them)."""
    pool = chats or ChatPool(base_url, api_key)
    chat_ids = await pool.take(agent_id, streams)
    body = {"message": "bench", "agent_id": agent_id, **(body or {})}
    headers = {"x-api-key": api_key}
    return Target("kaiwa", base_url, chat_ids, body, headers=headers, pid=pid)


class ChatPool:
    """Chats per agent, created on demand and reused by later runs (a finished turn frees its
    chat). Each is renamed at creation, so that no turn generates a title."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self._base_url = base_url
        self._headers = {"x-api-key": api_key}
        self._chats: dict[str, list[int]] = {}

    async def take(self, agent_id: str, n: int) -> list[int]:
        have = self._chats.setdefault(agent_id, [])
        if len(have) < n:
            have.extend(await self._create(agent_id, n - len(have)))
        return have[:n]

    async def _create(self, agent_id: str, n: int) -> list[int]:
        gate = asyncio.Semaphore(16)
        async with aiohttp.ClientSession(base_url=self._base_url, headers=self._headers) as session:

            async def new_chat(i: int) -> int:
                async with gate:
                    body = {"name": f"bench {i}", "agent_id": agent_id}
                    async with session.post("/api/v1/chats", json=body) as r:
                        r.raise_for_status()
                        chat_id = int((await r.json())["data"]["id"])
                    rename = {"name": "bench"}
                    async with session.put(f"/api/v1/chats/{chat_id}", json=rename) as r:
                        r.raise_for_status()
                    return chat_id

            return list(await asyncio.gather(*(new_chat(i) for i in range(n))))


if __name__ == "__main__":
    main()
