"""kaiwa against the floor, over the same fake model, in one run; targets printed PASS/FAIL.

    python bench/run.py --quick      # the quick set: under 5 minutes on 2 cores
    python bench/run.py              # the full set: more streams, longer runs (~10 minutes)

Starts `fake_model.py`, `floor.py` and two real `kaiwa serve`s (each a fresh data directory, a
`kaiwa.toml` naming the fake model as provider `fake`) on loopback: `kaiwa`, with its event log
in process, and `kaiwa+redis`, with its event log, stops and limits in a `redis-server` of the
run's own (whose CPU time counts as that server's; `--no-redis` leaves it out). It runs every
scenario against the floor then each kaiwa with `load.py`, and writes to `bench/results/`
(git-ignored): `latest.json` (every figure, the model's and the loader's CPU time too),
`latest.md` (the tables, also printed), `latest.png` (added latency percentiles against
concurrency; needs matplotlib: `pip install 'kaiwa[bench]'`) and the servers' output
(`kaiwa.log`, `kaiwa-redis.log`). Every process
is stopped at the end.

Scenarios (see bench/README.md for what each figure means):

* saturation: the model offers far more tokens than a server relays: CPU per 1,000 deltas,
  deltas per second;
* 100 and 1,000 streams at 20 tokens/s: added latency per delta;
* paced arrivals at 50 new messages per second: time to `response.created`, first delta;
* capacity: the most streams at 20 tokens/s held open at once with the p99 added latency of
  the tokens emitted meanwhile at most 100 ms (doubling, then bisecting; a few short steps);
* idle streams: resident memory per open stream whose model stalls after `response.created`;
* replay: a 10,000-event log through `GET …/responses/{id}/events` (kaiwa only).

A scenario's pace travels in the model's name (`bench-ttft0.2-tps20-n100`, see
`fake_model.py`), so one model process serves them all.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, os.path.dirname(__file__))
import load
from kaiwa_server import Kaiwa, running_kaiwa

HERE = Path(__file__).parent
RESULTS = HERE / "results"
FLOOR = "floor"

CAPACITY_P99_MS = 100.0
"""The capacity search's bound on the p99 added latency at 20 tokens/s."""


@dataclass(frozen=True)
class Scenario:
    name: str
    streams: int
    tps: float
    tokens: int
    ttft: float = 0.2
    ramp: float = 1.0
    """Starts are spread evenly over this many seconds."""
    hold: bool = False
    """Every stream waits at the model until all of them are open, then all stream together
    (`fake_model.py`'s `hold`): the figures are those of `streams` concurrent streams, however
    slowly the server admits them."""

    def model(self, tag: str | None = None) -> str:
        held = f"-hold{tag}" if tag else ""
        return f"bench{held}-ttft{self.ttft:g}-tps{self.tps:g}-n{self.tokens}"

    @property
    def timeout(self) -> float:
        admit = self.streams / 20 if self.hold else 0.0  # a slow server's queue of new turns
        return self.ttft + self.tokens / self.tps + self.ramp + admit + 60.0


def concurrent(n: int, tokens: int = 50) -> Scenario:
    """`n` streams at 20 tokens/s, all open together for `tokens` of them."""
    return Scenario(
        f"{n:,} streams, 20 tok/s",
        streams=n,
        tps=20,
        tokens=tokens,
        ramp=max(0.5, n / 400),
        hold=True,
    )


@dataclass(frozen=True)
class Plan:
    saturation: Scenario
    paced: list[Scenario]
    """`concurrent` ones, fewest streams first: the last one is the 1,000-stream target's."""
    arrivals: Scenario
    capacity_steps: int
    capacity_tokens: int
    """Tokens per stream in the capacity search's own runs (at 20 per second)."""
    idle_streams: int
    replay_events: int
    replay_runs: int


def arrivals(rate: float, seconds: float) -> Scenario:
    """New messages at `rate` per second for `seconds`, each a one-second answer."""
    n = int(rate * seconds)
    return Scenario(f"{rate:g} new messages/s", streams=n, tps=20, tokens=20, ramp=n / rate)


QUICK = Plan(
    saturation=Scenario("saturation: 200 streams, 200 tok/s", streams=200, tps=200, tokens=200),
    paced=[concurrent(100, tokens=40), concurrent(1000, tokens=30)],
    arrivals=arrivals(50, 6),
    capacity_steps=3,
    capacity_tokens=30,
    idle_streams=500,
    replay_events=10_000,
    replay_runs=5,
)
FULL = Plan(
    saturation=Scenario("saturation: 200 streams, 200 tok/s", streams=200, tps=200, tokens=400),
    paced=[concurrent(100, 100), concurrent(300, 100), concurrent(1000, 100)],
    arrivals=arrivals(50, 20),
    capacity_steps=5,
    capacity_tokens=60,
    idle_streams=1000,
    replay_events=10_000,
    replay_runs=20,
)
WARMUP = Scenario("warm-up", streams=5, tps=100, tokens=10, ramp=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick set (< 5 min, 2 cores)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-redis", action="store_true", help="only the in-process event log (no redis-server)"
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_before = os.getloadavg()
    with ExitStack() as stack:
        model_url, model_pid = stack.enter_context(bench_server("fake_model.py", log=args.out))
        floor_url, floor_pid = stack.enter_context(
            bench_server("floor.py", "--model-url", model_url, log=args.out)
        )
        kaiwas = {
            "kaiwa": stack.enter_context(embedded_kaiwa(model_url, str(args.out / "kaiwa.log")))
        }
        also: dict[str, tuple[int, ...]] = {}
        if not args.no_redis:
            import replicas  # it imports this module

            redis_url, redis_pid = stack.enter_context(replicas.redis_server(args.out))
            log = str(args.out / "kaiwa-redis.log")
            env = {"KAIWA_REDIS_URL": redis_url}
            kaiwas["kaiwa+redis"] = stack.enter_context(embedded_kaiwa(model_url, log, env))
            also["kaiwa+redis"] = (redis_pid,)
        bench = Bench(floor_url, floor_pid, kaiwas, model_url, model_pid, also)
        report = asyncio.run(bench.run_all(plan))
    report |= run_facts(quick=args.quick, load_before=load_before, started=started)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (args.out / "latest.md").write_text(text)
    print()
    print(text)
    _plot(report, args.out / "latest.png")


def run_facts(*, quick: bool, load_before: tuple[float, ...], started: float) -> dict[str, Any]:
    """When, where and how long a run was, for its report: the date, the machine, the set,
    the load average before and now, the wall time since `started` (monotonic)."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "set": "quick" if quick else "full",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.monotonic() - started, 1),
    }


class Bench:
    def __init__(
        self,
        floor_url: str,
        floor_pid: int,
        kaiwas: dict[str, Kaiwa],
        model_url: str,
        model_pid: int,
        also: dict[str, tuple[int, ...]] | None = None,
    ) -> None:
        """`kaiwas` by name (the first one's is the replay); `also`: by name, other processes
        whose CPU time counts as that server's."""
        self.floor_url = floor_url
        self.floor_pid = floor_pid
        self.kaiwas = kaiwas
        self.names = [FLOOR, *kaiwas]
        self.model_url = model_url
        self.model_pid = model_pid
        self.kaiwa_targets = {name: KaiwaTargets(kaiwa) for name, kaiwa in kaiwas.items()}
        self.also = also or {}
        self.tags = itertools.count(1)
        self.started = time.monotonic()

    async def run_all(self, plan: Plan) -> dict[str, Any]:
        await self.scenario(WARMUP)
        report: dict[str, Any] = {}
        # First, while the servers' heaps are small: later runs leave freed memory behind that
        # new streams would reuse without growing the resident set.
        report["servers"] = self.names
        report["idle"] = {name: await self.idle(name, plan.idle_streams) for name in self.names}
        report["saturation"] = await self.scenario(plan.saturation)
        report["paced"] = [await self.scenario(s) for s in plan.paced]
        report["arrivals"] = await self.scenario(plan.arrivals)
        report["capacity"] = {
            name: await self.capacity(
                name, report["paced"], plan.capacity_steps, plan.capacity_tokens
            )
            for name in self.names
        }
        first = next(iter(self.kaiwas.values()))
        report["replay"] = await asyncio.to_thread(
            _replay, first, plan.replay_events, plan.replay_runs
        )
        report["targets"] = targets(report)
        return report

    async def target(
        self, name: str, scenario: Scenario, model: str, body: dict[str, object] | None = None
    ) -> load.Target:
        if name == FLOOR:
            return load.Target(
                FLOOR,
                self.floor_url,
                list(range(1, scenario.streams + 1)),
                {"message": "bench", "model": model},
                pid=self.floor_pid,
            )
        target = await self.kaiwa_targets[name].target(scenario, model, body)
        return replace(target, name=name, also=self.also.get(name, ()))

    async def scenario(self, scenario: Scenario) -> dict[str, Any]:
        row: dict[str, Any] = {"scenario": asdict(scenario)}
        for name in self.names:
            row[name] = await self.one(name, scenario)
        return row

    async def one(self, name: str, scenario: Scenario) -> dict[str, Any]:
        tag = f"{name[0]}{next(self.tags)}" if scenario.hold else None
        setup = time.monotonic()
        target = await self.target(name, scenario, scenario.model(tag))
        setup = time.monotonic() - setup
        model_cpu = load.cpu_seconds(self.model_pid)
        result = await run_scenario(target, scenario, self.model_url, tag)
        summary: dict[str, Any] = dict(load.summarize(result, ttft=scenario.ttft))
        summary["model_cpu_s"] = round(load.cpu_seconds(self.model_pid) - model_cpu, 3)
        summary["setup_s"] = round(setup, 2)
        at = time.monotonic() - self.started
        print(f"{at:5.0f}s {scenario.name:<38} {name:<11} {_brief(summary)}", flush=True)
        for error in load.first_errors(result):
            print("    error:", error, flush=True)
        await asyncio.sleep(0.5)  # let the servers settle between runs
        return summary

    async def capacity(
        self, name: str, paced: list[dict[str, Any]], steps: int, tokens: int
    ) -> dict[str, Any]:
        """`search_capacity` from the `concurrent` runs already made."""

        async def attempt(n: int) -> dict[str, Any]:
            scenario = replace(concurrent(n, tokens), name=f"capacity: {n} streams")
            return await self.one(name, scenario)

        tried = {row["scenario"]["streams"]: row[name] for row in paced}
        return await search_capacity(attempt, steps, tried)

    async def idle(self, name: str, n: int) -> dict[str, Any]:
        """Resident memory per open stream whose model stalls after `response.created`."""
        scenario = Scenario("idle", streams=n, tps=20, tokens=10, ramp=n / 500, hold=True)
        body: dict[str, object] = {"on_disconnect": "cancel"}
        model = scenario.model(f"idle{next(self.tags)}")  # never released
        target = await self.target(name, scenario, model, None if name == FLOOR else body)
        assert target.pid is not None
        await asyncio.sleep(1.0)
        before = _rss(target.pid)
        hold, all_open = asyncio.Event(), asyncio.Event()
        created = 0

        def count() -> None:
            nonlocal created
            created += 1
            if created == n:
                all_open.set()

        running = asyncio.create_task(
            load.run(
                target,
                n,
                ramp=scenario.ramp,
                stream_limit=scenario.timeout,
                hold=hold,
                on_created=count,
            )
        )
        waiting = asyncio.create_task(all_open.wait())
        await asyncio.wait(
            [waiting, running], timeout=scenario.ramp + 60, return_when=asyncio.FIRST_COMPLETED
        )
        waiting.cancel()
        await asyncio.sleep(2.0)  # the last ones settle: producer parked, writer parked
        during = _rss(target.pid)
        hold.set()
        result = await running
        errors = sum(1 for s in result.streams if s.error)
        opened = sum(1 for s in result.streams if s.created is not None)
        per_stream = (during - before) / max(opened, 1)
        at = time.monotonic() - self.started
        print(
            f"{at:5.0f}s {'idle streams':<38} {name:<11} opened={opened} errors={errors} "
            f"rss {before / 2**20:.1f} -> {during / 2**20:.1f} MiB: "
            f"{per_stream / 1024:.1f} KiB per stream",
            flush=True,
        )
        await asyncio.sleep(2.0)  # cancelled producers store their outcome
        return {
            "streams": n,
            "opened": opened,
            "errors": errors,
            "rss_before_mib": round(before / 2**20, 2),
            "rss_open_mib": round(during / 2**20, 2),
            "kib_per_stream": round(per_stream / 1024, 2),
        }


class KaiwaTargets:
    """`load.Target`s on one kaiwa — a server, or replicas behind a load balancer — over the
    fake model: an agent per model name, chats reused from run to run."""

    def __init__(self, kaiwa: Kaiwa) -> None:
        self.kaiwa = kaiwa
        self.chats = load.ChatPool(kaiwa.base_url, kaiwa.api_key)
        self.agents: dict[str, str] = {}
        self.held_agent: tuple[str, str] | None = None
        """(id, llm_model): one agent for every held run, republished on each new model, so
        that they all reuse its chats."""

    async def target(
        self, scenario: Scenario, model: str, body: dict[str, object] | None = None
    ) -> load.Target:
        """`scenario.streams` chats of an agent on `fake/<model>`."""
        agent = await self.agent(f"fake/{model}", held=scenario.hold)
        return await load.kaiwa_target(
            self.kaiwa.base_url,
            self.kaiwa.api_key,
            agent,
            scenario.streams,
            pid=self.kaiwa.pid or None,
            chats=self.chats,
            body=body,
        )

    async def agent(self, llm_model: str, *, held: bool) -> str:
        if not held:
            if llm_model not in self.agents:
                self.agents[llm_model] = await _agent(self.kaiwa, llm_model)
            return self.agents[llm_model]
        if self.held_agent is None:
            self.held_agent = (await _agent(self.kaiwa, llm_model), llm_model)
        elif self.held_agent[1] != llm_model:
            agent_id = self.held_agent[0]
            await _republish(self.kaiwa, agent_id, llm_model)
            self.held_agent = (agent_id, llm_model)
        return self.held_agent[0]


async def run_scenario(
    target: load.Target, scenario: Scenario, model_url: str, tag: str | None
) -> load.RunResult:
    """One run of `scenario` against `target`; with `tag` (a held run, on a model named
    `scenario.model(tag)`) its streams are released once all of them wait at the model."""
    async with asyncio.timeout(scenario.timeout + 30):
        running = asyncio.create_task(
            load.run(target, scenario.streams, ramp=scenario.ramp, stream_limit=scenario.timeout)
        )
        if tag is not None:
            await load.release_when_held(model_url, tag, scenario.streams)
        return await running


def capacity_ok(summary: dict[str, Any]) -> bool:
    """No error, and the plateau's p99 added latency within `CAPACITY_P99_MS`."""
    p99 = summary["plateau_added_ms_p99"]
    return not summary["errors"] and p99 is not None and p99 <= CAPACITY_P99_MS


async def search_capacity(
    attempt: Callable[[int], Awaitable[dict[str, Any]]],
    steps: int,
    tried: dict[int, dict[str, Any]] | None = None,
    *,
    first: int = 100,
) -> dict[str, Any]:
    """The most streams at 20 tokens/s all open at once that pass `capacity_ok`.

    `attempt(n)` makes a held run of `n` such streams and returns its summary; `tried` holds
    runs already made (by streams). Then `steps` more runs (the first of `first` streams when
    nothing was tried): doubling past the largest pass while it passes, else bisecting (in log
    scale) between the largest pass and the smallest fail, until they are within 15 %.
    """
    runs = {n: r | {"pass": capacity_ok(r)} for n, r in (tried or {}).items()}
    for _ in range(steps):
        good = max((n for n, r in runs.items() if r["pass"]), default=0)
        bad = min((n for n, r in runs.items() if not r["pass"] and n > good), default=None)
        if not runs:
            n = first
        elif bad is None:
            n = good * 2
        else:
            n = int(math.sqrt(max(good, 25) * bad) // 10 * 10)
            if n <= good or n >= bad or (bad - good) / bad < 0.15:
                break
        summary = await attempt(n)
        runs[n] = summary | {"pass": capacity_ok(summary)}
    good = max((n for n, r in runs.items() if r["pass"]), default=0)
    bad = min((n for n, r in runs.items() if not r["pass"] and n > good), default=None)
    return {
        "streams": good,
        "first_failing": bad,
        "tried": {str(k): v for k, v in sorted(runs.items())},
    }


def _replay(kaiwa: Kaiwa, events: int, runs: int) -> dict[str, Any]:
    import replay

    headers = {"x-api-key": kaiwa.api_key}
    with httpx.Client(base_url=kaiwa.base_url, headers=headers, timeout=60) as client:
        result = replay.replay_over_http(client, events, runs)
    if isinstance(result, str):
        print(f"{'replay':<38} kaiwa  skipped: {result}", flush=True)
        return {"skipped": result}
    replayed, seconds = result
    median = statistics.median(seconds) * 1000
    print(f"{'replay':<38} kaiwa  {replayed} events: median {median:.1f} ms", flush=True)
    return {
        "events": replayed,
        "runs": len(seconds),
        "median_ms": round(median, 2),
        "max_ms": round(max(seconds) * 1000, 2),
    }


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# ---------------------------------------------------------------- targets and the report

Check = tuple[str, str, Callable[[dict[str, Any]], tuple[float | None, float | None, bool]]]


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of each kaiwa: what it bounds, its figure, the floor's, the bound, PASS or
    FAIL. Bounds relative to the floor are on the same run's floor."""
    sat = report["saturation"]
    big = report["paced"][-1]
    arr = report["arrivals"]
    idle = report["idle"]
    cap = report["capacity"]
    rate = arr["scenario"]["streams"] / arr["scenario"]["ramp"]
    streams = big["scenario"]["streams"]
    rows: list[dict[str, Any]] = []

    def of(name: str) -> None:

        def add(label: str, k: float | None, f: float | None, bound: str, ok: bool) -> None:
            row = {"target": label, "server": name, "kaiwa": k, "floor": f, "bound": bound}
            rows.append(row | {"pass": bool(ok)})

        def ratio(run: dict[str, Any], key: str) -> tuple[float | None, float | None]:
            return run[name][key], run[FLOOR][key]

        k, f = ratio(sat, "cpu_s_per_1000_deltas")
        add(
            "server CPU-s per 1,000 deltas (saturation)",
            k,
            f,
            "≤ 1.0 × floor",
            k is not None and f is not None and k <= f,
        )
        k, f = ratio(sat, "deltas_per_s")
        add(
            "deltas per second (saturation)",
            k,
            f,
            "≥ 1.0 × floor",
            k is not None and f is not None and k >= f and not sat[name]["errors"],
        )
        k, f = ratio(arr, "first_delta_over_ttft_ms_p50")
        add(
            f"first delta over the model's TTFT p50 at {rate:g} msg/s (ms)",
            k,
            f,
            "≤ 1.1 × floor",
            k is not None and f is not None and k <= 1.1 * f and not arr[name]["errors"],
        )
        k, f = ratio(idle, "kib_per_stream")
        add(
            "resident memory per open idle stream (KiB)",
            k,
            f,
            "≤ 50",
            k is not None and k <= 50 and not idle[name]["errors"],
        )
        k, f = cap[name]["streams"], cap[FLOOR]["streams"]
        add(
            f"capacity: streams at 20 tok/s, p99 ≤ {CAPACITY_P99_MS:g} ms",
            k,
            f,
            "≥ 1.0 × floor",
            k >= f,
        )
        k, f = ratio(arr, "created_ms_p50")
        add(
            f"time to response.created p50 at {rate:g} msg/s (ms)",
            k,
            f,
            "≤ 10",
            k is not None and k <= 10 and not arr[name]["errors"],
        )
        k, f = ratio(big, "plateau_added_ms_p99")
        add(
            f"added latency p99 at {streams:,} concurrent streams (ms)",
            k,
            f,
            "≤ 20",
            k is not None and k <= 20 and not big[name]["errors"],
        )

    for name in report.get("servers", [FLOOR, "kaiwa"]):
        if name != FLOOR:
            of(name)
    replay = report["replay"]
    k = replay.get("median_ms")
    events = replay.get("events", 10_000)
    rows.append(
        {
            "target": f"replay of {events:,} events, median (ms)",
            "server": "kaiwa",
            "kaiwa": k,
            "floor": None,
            "bound": "≤ 200",
            "pass": k is not None and k <= 200,
        }
    )
    return rows


ROWS = [
    ("server CPU-s per 1,000 deltas", "cpu_s_per_1000_deltas"),
    ("deltas per second", "deltas_per_s"),
    ("added latency per delta p50 (ms)", "added_ms_p50"),
    ("added latency per delta p99 (ms)", "added_ms_p99"),
    ("most streams open at once", "concurrent_peak"),
    ("… all open for (s)", "plateau_s"),
    ("… added latency then p50 (ms)", "plateau_added_ms_p50"),
    ("… added latency then p99 (ms)", "plateau_added_ms_p99"),
    ("time to response.created p50 (ms)", "created_ms_p50"),
    ("time to response.created p99 (ms)", "created_ms_p99"),
    ("first delta over TTFT p50 (ms)", "first_delta_over_ttft_ms_p50"),
    ("first delta over TTFT p99 (ms)", "first_delta_over_ttft_ms_p99"),
    ("streams with an error", "errors"),
]


def markdown(report: dict[str, Any]) -> str:
    names = report.get("servers", [FLOOR, "kaiwa"])
    kaiwas = [n for n in names if n != FLOOR]
    lines = [
        f"{report['date']}, {report['machine']}, {report['set']} set in {report['wall_s']:.0f} s; "
        f"load average {report['load_average_before'][0]:.2f} before, "
        f"{report['load_average_after'][0]:.2f} after",
        "",
        "| target | server | value | floor | bound | |",
        "|---|---|--:|--:|--:|---|",
    ]
    for t in report["targets"]:
        verdict = "PASS" if t["pass"] else "**FAIL**"
        lines.append(
            f"| {t['target']} | {t.get('server', 'kaiwa')} | {number(t['kaiwa'])} "
            f"| {number(t['floor'])} | {t['bound']} | {verdict} |"
        )
    cap = report["capacity"]
    found = "; ".join(f"{name} {_capacity(cap[name])}" for name in names)
    lines += [
        "",
        f"Capacity: the most streams at 20 tok/s all open at once with p99 added latency "
        f"≤ {CAPACITY_P99_MS:g} ms: {found}.",
        "",
        "| scenario | measure | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"{k} / floor" for k in kaiwas)
        + " |",
        "|---|---|" + "--:|" * (len(names) + len(kaiwas)),
    ]

    def cells(values: dict[str, Any]) -> str:
        f = values[FLOOR]
        ratios = [
            f"{values[k] / f:.2f}" if isinstance(values[k], int | float) and f else ""
            for k in kaiwas
        ]
        return " | ".join([*(number(values[n]) for n in names), *ratios])

    for row in [report["saturation"], *report["paced"], report["arrivals"]]:
        name = row["scenario"]["name"]
        for label, key in ROWS:
            values = {n: row[n][key] for n in names}
            if all(v is None for v in values.values()) or (
                row["scenario"]["hold"] and "ttft" in key
            ):
                # Held streams wait for each other before their first token.
                continue
            lines.append(f"| {name} | {label} | {cells(values)} |")
    idle = report["idle"]
    for label, key in (
        ("open streams", "opened"),
        ("resident set with them open (MiB)", "rss_open_mib"),
        ("resident memory per stream (KiB)", "kib_per_stream"),
    ):
        lines.append(f"| idle streams | {label} | {cells({n: idle[n][key] for n in names})} |")
    return "\n".join(lines) + "\n"


def _capacity(result: dict[str, Any]) -> str:
    tried = ", ".join(
        f"{n} {'ok' if r['pass'] else 'no'} ({number(r['plateau_added_ms_p99'])} ms)"
        for n, r in result["tried"].items()
    )
    return f"**{result['streams']}** (tried {tried})"


def number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "–" if value is None else str(value)


def _brief(s: dict[str, Any]) -> str:
    return (
        f"deltas={s['deltas']} errors={s['errors']} wall={s['wall_s']}s "
        f"cpu/1k={s['cpu_s_per_1000_deltas']} added p50={s['added_ms_p50']}ms "
        f"p99={s['added_ms_p99']}ms peak={s['concurrent_peak']} "
        f"plateau p99={s['plateau_added_ms_p99']}ms created p50={s['created_ms_p50']}ms "
        f"loader_cpu={s['loader_cpu_s']}s"
    )


def _plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no PNG: matplotlib is not installed: pip install 'kaiwa[bench]')")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {"kaiwa": "tab:red", "kaiwa+redis": "tab:orange", FLOOR: "tab:blue"}
    for name, colour in colours.items():
        if name not in report["capacity"]:
            continue
        # Every run of streams all open at once at 20 tok/s.
        runs = [r[name] for r in report["paced"]] + list(report["capacity"][name]["tried"].values())
        points = sorted(
            (r["concurrent_peak"], r["plateau_added_ms_p50"], r["plateau_added_ms_p99"])
            for r in runs
            if r["plateau_added_ms_p99"] is not None
        )
        if not points:
            continue
        x = [p[0] for p in points]
        ax.plot(x, [p[1] for p in points], "-o", color=colour, label=f"{name} p50")
        ax.plot(x, [p[2] for p in points], "--s", color=colour, label=f"{name} p99")
    ax.axhline(CAPACITY_P99_MS, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("streams open at once (20 tokens/s each)")
    ax.set_ylabel("added latency per delta (ms)")
    ax.set_title(f"kaiwa vs floor, {report['date'][:10]}, {report['machine']}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


# ---------------------------------------------------------------- processes


@contextmanager
def spawned(
    argv: list[str], *, log_path: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process with its output in `log_path` (else dropped), stopped by its pid at exit:
    SIGTERM, then SIGKILL after 10 s."""
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env)
    except BaseException:
        if log_path:
            out.close()  # type: ignore[union-attr]
        raise
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if log_path:
            out.close()  # type: ignore[union-attr]


@contextmanager
def bench_server(script: str, *extra: str, log: Path | None = None) -> Iterator[tuple[str, int]]:
    """One of the bench's own servers on a free loopback port: (base URL, pid). Its output
    goes to `<log>/<script>.log` (a dropped stream makes the floor print tracebacks)."""
    port = free_port()
    argv = [sys.executable, str(HERE / script), "--port", str(port), *extra]
    log_path = log / f"{Path(script).stem}.log" if log else None
    with spawned(argv, log_path=log_path) as proc:
        _wait_port(port, proc)
        base = f"http://127.0.0.1:{port}"
        yield (f"{base}/v1" if script == "fake_model.py" else base), proc.pid


def kaiwa_config(model_url: str) -> str:
    """A `kaiwa.toml` naming the fake model at `model_url` as provider `fake`, and `scripted`."""
    return (
        f'[providers.fake]\ntype = "openai"\nbase_url = "{model_url}"\napi_key = "x"\n'
        '[providers.scripted]\ntype = "scripted"\n'
    )


@contextmanager
def embedded_kaiwa(
    model_url: str, log_path: str, env: dict[str, str] | None = None
) -> Iterator[Kaiwa]:
    """A `kaiwa serve` on a fresh SQLite data directory; `env` adds to its environment (e.g.
    `KAIWA_REDIS_URL`)."""
    with tempfile.TemporaryDirectory() as config_dir:
        config = Path(config_dir) / "kaiwa.toml"
        config.write_text(kaiwa_config(model_url))
        env = {"KAIWA_CONFIG": str(config), "KAIWA_SHUTDOWN_GRACE": "2", **(env or {})}
        with running_kaiwa(env=env, log_path=log_path) as k:
            yield k


async def _agent(kaiwa: Kaiwa, llm_model: str) -> str:
    """A published agent on `llm_model`; its id."""
    headers = {"x-api-key": kaiwa.api_key}
    async with httpx.AsyncClient(base_url=kaiwa.base_url, headers=headers, timeout=30) as client:
        body = {"name": llm_model, "llm_model": llm_model}
        created = await client.post("/api/v1/agents", json=body)
        created.raise_for_status()
        agent_id = str(created.json()["data"]["id"])
        (await client.post(f"/api/v1/agents/{agent_id}/publish")).raise_for_status()
    return agent_id


async def _republish(kaiwa: Kaiwa, agent_id: str, llm_model: str) -> None:
    headers = {"x-api-key": kaiwa.api_key}
    async with httpx.AsyncClient(base_url=kaiwa.base_url, headers=headers, timeout=30) as client:
        body = {"llm_model": llm_model}
        (await client.patch(f"/api/v1/agents/{agent_id}", json=body)).raise_for_status()
        (await client.post(f"/api/v1/agents/{agent_id}/publish")).raise_for_status()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a bench server exited early with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listening on port {port}")


if __name__ == "__main__":
    main()
