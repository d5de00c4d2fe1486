"""One `kaiwa serve` with the Redis event log against the same without it, at saturation.

    .venv/bin/python bench/redis_cost.py --quick    # run.py's quick saturation, 3 runs each: ~1 min
    .venv/bin/python bench/redis_cost.py            # its full saturation, 5 runs each: ~2 min

Starts on loopback, each on a free port and stopped by its own pid at the end (also on Ctrl-C or
SIGTERM): `fake_model.py`, a `redis-server` (no persistence) and two `kaiwa serve` in the
embedded default (SQLite, a fresh data directory each): one without Redis (the in-process event
log), one with `KAIWA_REDIS_URL` naming that Redis (its event log there, and its heartbeats,
stop channel and rate limits; a single replica on SQLite). After a warm-up of each, `run.py`'s
saturation run (200 streams offered 200 tokens/s each: more than a server relays) goes to one
then the other, `--runs` times each, alternating, so that a slow stretch of a shared machine
falls on both.

Per run: server CPU seconds per 1,000 deltas, of kaiwa's process alone and of kaiwa and
redis-server together, over the run and the second after it (the answers' last writes); then
the medians and their ratio, Redis over in-process. Target, printed PASS/FAIL for both: ≤ 1.2 ×.
`bench/redis_log.py` measures the log alone, where every fixed cost looks larger.

Writes `bench/results/redis_cost.json` (every run) and `redis_cost.md` (the tables, also
printed); the servers' output goes to `bench/results/redis_cost/`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
import load
import replicas
import run
from kaiwa_server import Kaiwa

RATIO = 1.2
"""The bound on CPU per 1,000 deltas with the Redis log over the in-process log."""
SETTLE_S = 1.0
"""CPU is counted this long past a run's last stream too."""
LOGS = {"in-process": "in-process log", "redis": "Redis log"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run.py's quick saturation run")
    parser.add_argument("--runs", type=int, help="runs of each server (default 3 quick, 5 full)")
    parser.add_argument("--out", type=Path, default=run.RESULTS)
    args = parser.parse_args()
    scenario = (run.QUICK if args.quick else run.FULL).saturation
    runs = args.runs or (3 if args.quick else 5)
    logs = args.out / "redis_cost"
    logs.mkdir(parents=True, exist_ok=True)
    # SIGTERM unwinds like Ctrl-C, so that every process started here is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    load_before = os.getloadavg()
    with ExitStack() as stack:
        model_url, _ = stack.enter_context(run.bench_server("fake_model.py", log=logs))
        redis_url, redis_pid = stack.enter_context(replicas.redis_server(logs))
        with_redis = {"KAIWA_REDIS_URL": redis_url, "KAIWA_SHUTDOWN_DELAY": "0"}
        servers = {
            "in-process": stack.enter_context(
                run.embedded_kaiwa(model_url, str(logs / "kaiwa.log"))
            ),
            "redis": stack.enter_context(
                run.embedded_kaiwa(model_url, str(logs / "kaiwa-redis.log"), with_redis)
            ),
        }
        measured = asyncio.run(measure(servers, redis_pid, model_url, scenario, runs))
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "set": "quick" if args.quick else "full",
        "scenario": f"saturation: {scenario.streams} streams × {scenario.tokens} tokens offered "
        f"at {scenario.tps:g} tok/s",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.monotonic() - started, 1),
        "runs": measured,
    }
    report |= summary(measured)
    (args.out / "redis_cost.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (args.out / "redis_cost.md").write_text(text)
    print()
    print(text)


async def measure(
    servers: dict[str, Kaiwa], redis_pid: int, model_url: str, scenario: run.Scenario, runs: int
) -> dict[str, list[dict[str, Any]]]:
    """`runs` runs of `scenario` on each server, alternating; each run's figures by server."""
    targets = {name: run.KaiwaTargets(kaiwa) for name, kaiwa in servers.items()}
    warm = run.WARMUP
    for t in targets.values():
        await run.run_scenario(await t.target(warm, warm.model()), warm, model_url, None)
    measured: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    started = time.monotonic()
    for _ in range(runs):
        for name, kaiwa in servers.items():
            target = await targets[name].target(scenario, scenario.model())
            kaiwa_before, redis_before = load.cpu_seconds(kaiwa.pid), load.cpu_seconds(redis_pid)
            result = await run.run_scenario(target, scenario, model_url, None)
            await asyncio.sleep(SETTLE_S)
            kaiwa_s = load.cpu_seconds(kaiwa.pid) - kaiwa_before
            redis_s = load.cpu_seconds(redis_pid) - redis_before
            figures = load.summarize(result, ttft=scenario.ttft)
            deltas = int(figures["deltas"] or 0)
            # The in-process server does not use Redis: what redis-server spends meanwhile is
            # its idle timer and the other server's heartbeats.
            servers_s = kaiwa_s + redis_s if name == "redis" else kaiwa_s
            row = {
                "deltas": deltas,
                "errors": figures["errors"],
                "deltas_per_s": figures["deltas_per_s"],
                "added_ms_p50": figures["added_ms_p50"],
                "added_ms_p99": figures["added_ms_p99"],
                "kaiwa_cpu_s": round(kaiwa_s, 3),
                "redis_cpu_s": round(redis_s, 3),
                "kaiwa_per_1000": _per_1000(kaiwa_s, deltas),
                "servers_per_1000": _per_1000(servers_s, deltas),
            }
            measured[name].append(row)
            print(
                f"{time.monotonic() - started:5.0f}s {LOGS[name]:<15} deltas={deltas} "
                f"errors={row['errors']} deltas/s={row['deltas_per_s']} cpu-s kaiwa={kaiwa_s:.2f} "
                f"redis={redis_s:.2f}; per 1,000 deltas kaiwa={row['kaiwa_per_1000']} "
                f"with redis-server={row['servers_per_1000']}",
                flush=True,
            )
            for error in load.first_errors(result):
                print("    error:", error, flush=True)
            await asyncio.sleep(0.5)  # let the servers settle between runs
    return measured


def _per_1000(seconds: float, deltas: int) -> float | None:
    return round(seconds / deltas * 1000, 4) if deltas else None


def summary(measured: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per server, the ratios of the medians, and each round's ratio."""
    medians = {
        name: {
            key: _median([r[key] for r in rows])
            for key in ("kaiwa_per_1000", "servers_per_1000", "deltas_per_s")
        }
        | {"errors": sum(r["errors"] for r in rows)}
        for name, rows in measured.items()
    }
    base, redis = medians["in-process"], medians["redis"]
    clean = base["errors"] == redis["errors"] == 0
    targets = []
    rounds = {}
    for key, label in (("kaiwa_per_1000", "kaiwa"), ("servers_per_1000", "kaiwa + redis-server")):
        ratio = _ratio(redis[key], base[key])
        targets.append(
            {
                "target": f"CPU per 1,000 deltas, Redis log / in-process log: {label}",
                "value": ratio,
                "bound": f"≤ {RATIO:g} ×",
                "pass": clean and ratio is not None and ratio <= RATIO,
            }
        )
        rounds[key] = [
            _ratio(b[key], a[key])
            for a, b in zip(measured["in-process"], measured["redis"], strict=True)
        ]
    return {"medians": medians, "targets": targets, "round_ratios": rounds}


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 4) if known else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def markdown(report: dict[str, Any]) -> str:
    medians, measured = report["medians"], report["runs"]
    runs = len(measured["redis"])
    lines = [
        f"{report['date']}, {report['machine']}, {report['set']} set in {report['wall_s']:.0f} s; "
        f"load average {report['load_average_before'][0]:.2f} before, "
        f"{report['load_average_after'][0]:.2f} after",
        "",
        "| target | value | bound | |",
        "|---|--:|--:|---|",
    ]
    for t in report["targets"]:
        verdict = "PASS" if t["pass"] else "**FAIL**"
        lines.append(f"| {t['target']} | {_num(t['value'])} | {t['bound']} | {verdict} |")
    lines += [
        "",
        f"{report['scenario']}, one `kaiwa serve` on SQLite with and without `KAIWA_REDIS_URL`, "
        f"{runs} runs each, alternating; median (each run). CPU seconds over the run and "
        f"{SETTLE_S:g} s after it.",
        "",
        "| event log | server CPU-s per 1,000 deltas: kaiwa | kaiwa + redis-server | "
        "deltas per second | streams with an error |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, rows in measured.items():
        cells = [
            f"{_num(medians[name][key])} ({', '.join(_num(r[key]) for r in rows)})"
            for key in ("kaiwa_per_1000", "servers_per_1000", "deltas_per_s")
        ]
        lines.append(f"| {LOGS[name]} | {' | '.join(cells)} | {medians[name]['errors']} |")
    cells = [
        f"{_num(t['value'])} ({', '.join(map(_num, rounds))})"
        for t, rounds in zip(report["targets"], report["round_ratios"].values(), strict=True)
    ]
    lines.append(f"| Redis / in-process | {' | '.join(cells)} | | |")
    return "\n".join(lines) + "\n"


_num = run.number


if __name__ == "__main__":
    main()
