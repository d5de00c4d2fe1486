"""What metrics and traces cost: one `kaiwa serve` per mode at saturation, in one run.

    .venv/bin/python bench/telemetry.py --quick    # run.py's quick saturation, 3 runs each
    .venv/bin/python bench/telemetry.py            # its full saturation, 5 runs each
    .venv/bin/python bench/telemetry.py --modes off,metrics

Modes: `off` (`KAIWA_METRICS_ENABLED=false`), `metrics` (the default: `GET /metrics` and what
it counts), `tracing` (`KAIWA_TRACING_ENABLED=true`, metrics off) and `both`. The tracing modes
need OpenTelemetry (`pip install 'kaiwa[otel]'`) and a kaiwa that has the setting; without
either they are skipped, with a message saying why. Their spans and GenAI metrics go over
OTLP/HTTP (`OTEL_EXPORTER_OTLP_ENDPOINT`) to a sink of this script, which answers every export
with 200 and drops it: the exporter's work is counted, a collector's is not.

Starts on loopback, each on a free port and stopped by its own pid at the end (also on Ctrl-C or
SIGTERM): `fake_model.py`, the OTLP sink (tracing modes only) and one `kaiwa serve` per mode in
the embedded default (SQLite, a fresh data directory each). After a warm-up of each, `run.py`'s
saturation run (200 streams offered 200 tokens/s each: more than a server relays) goes to each
mode in turn, `--runs` times, the order rotated every round so that a slow stretch of a shared
machine falls on every mode. With metrics on, each run ends with a scrape of `/metrics` (a
Prometheus scraping every 15 s does about one per run), counted in the run's CPU.

Per run: kaiwa's CPU seconds per 1,000 deltas, over the run and the second after it; then the
medians and their ratio to `off`. Targets, printed PASS/FAIL: metrics ≤ 1.03 ×, tracing ≤ 1.10 ×.
A run's CPU varies by ±10 % from one run to the next, more than the metrics cost: so the same
invocation also times the metrics' own work in this process, without a server (`micro`: one
answer's observer calls, one request through the middleware, one chunk more through it), and
gives it per 1,000 deltas of the saturation run (an answer and a request per `tokens` deltas,
at most a chunk per delta) as a fraction of `off`'s CPU.

Writes `bench/results/telemetry.json` (every run) and `telemetry.md` (the tables, also printed);
the servers' output goes to `bench/results/telemetry/`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
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

import httpx

sys.path.insert(0, os.path.dirname(__file__))
import load
import run
from kaiwa_server import Kaiwa

from kaiwa.config import Settings

SETTLE_S = 1.0
"""CPU is counted this long past a run's last stream too."""
MODES: dict[str, dict[str, str]] = {
    "off": {"KAIWA_METRICS_ENABLED": "false"},
    "metrics": {"KAIWA_METRICS_ENABLED": "true"},
    "tracing": {"KAIWA_METRICS_ENABLED": "false", "KAIWA_TRACING_ENABLED": "true"},
    "both": {"KAIWA_METRICS_ENABLED": "true", "KAIWA_TRACING_ENABLED": "true"},
    "off-again": {"KAIWA_METRICS_ENABLED": "false"},
}
"""`off-again` (not run unless named) is a second `off` server: the noise floor of the ratio."""
DEFAULT_MODES = "off,metrics,tracing,both"
BOUNDS = {"metrics": 1.03, "tracing": 1.10, "both": 1.13}
"""CPU per 1,000 deltas over `off`'s: the issue's targets (`both` is the two added up)."""
TRACED = ("tracing", "both")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run.py's quick saturation run")
    parser.add_argument("--runs", type=int, help="runs of each mode (default 3 quick, 5 full)")
    parser.add_argument(
        "--modes",
        default=DEFAULT_MODES,
        help=f"comma-separated among {', '.join(MODES)}; `off` is required",
    )
    parser.add_argument("--out", type=Path, default=run.RESULTS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--otlp-sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.otlp_sink:
        asyncio.run(otlp_sink(args.port))
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or "off" not in modes:
        parser.error(f"modes are {', '.join(MODES)}, with `off` among them; got {args.modes}")
    why_not = tracing_unavailable()
    if why_not is not None and any(m in TRACED for m in modes):
        print(f"skipping the tracing modes: {why_not}", flush=True)
        modes = [m for m in modes if m not in TRACED]
    scenario = (run.QUICK if args.quick else run.FULL).saturation
    runs = args.runs or (3 if args.quick else 5)
    logs = args.out / "telemetry"
    logs.mkdir(parents=True, exist_ok=True)
    # SIGTERM unwinds like Ctrl-C, so that every process started here is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    load_before = os.getloadavg()
    with ExitStack() as stack:
        model_url, _ = stack.enter_context(run.bench_server("fake_model.py", log=logs))
        common = {"KAIWA_SHUTDOWN_DELAY": "0"}
        if any(m in TRACED for m in modes):
            sink_url, _ = stack.enter_context(
                run.bench_server("telemetry.py", "--otlp-sink", log=logs)
            )
            common |= {
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_SERVICE_NAME": "kaiwa-bench",
            }
        servers = {
            mode: stack.enter_context(
                run.embedded_kaiwa(model_url, str(logs / f"kaiwa-{mode}.log"), common | MODES[mode])
            )
            for mode in modes
        }
        measured = asyncio.run(measure(servers, model_url, scenario, runs))
    own = micro(scenario.tokens) if "metrics" in modes else None
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "set": "quick" if args.quick else "full",
        "scenario": f"saturation: {scenario.streams} streams × {scenario.tokens} tokens offered "
        f"at {scenario.tps:g} tok/s",
        "skipped": None if why_not is None else f"tracing modes: {why_not}",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.monotonic() - started, 1),
        "runs": measured,
        "metrics_own_work": own,
    }
    report |= summary(measured)
    if own is not None and report["medians"]["off"]["per_1000"]:
        own["share_of_off"] = round(
            own["ms_per_1000"] / 1000 / report["medians"]["off"]["per_1000"], 4
        )
    (args.out / "telemetry.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (args.out / "telemetry.md").write_text(text)
    print()
    print(text)


def tracing_unavailable() -> str | None:
    """Why the tracing modes cannot run here, if they cannot."""
    if "tracing_enabled" not in Settings.model_fields:
        return "this kaiwa has no KAIWA_TRACING_ENABLED setting"
    for module in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        if found is None:
            return f"{module} is not importable: pip install 'kaiwa[otel]'"
    return None


async def measure(
    servers: dict[str, Kaiwa], model_url: str, scenario: run.Scenario, runs: int
) -> dict[str, list[dict[str, Any]]]:
    """`runs` runs of `scenario` on each server, the order rotated each round."""
    targets = {name: run.KaiwaTargets(kaiwa) for name, kaiwa in servers.items()}
    warm = run.WARMUP
    for t in targets.values():
        await run.run_scenario(await t.target(warm, warm.model()), warm, model_url, None)
    measured: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    names = list(servers)
    started = time.monotonic()
    for round_ in range(runs):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            kaiwa = servers[name]
            target = await targets[name].target(scenario, scenario.model())
            before = load.cpu_seconds(kaiwa.pid)
            result = await run.run_scenario(target, scenario, model_url, None)
            await asyncio.sleep(SETTLE_S)
            scraped = await scrape(kaiwa) if MODES[name]["KAIWA_METRICS_ENABLED"] == "true" else 0
            cpu_s = load.cpu_seconds(kaiwa.pid) - before
            figures = load.summarize(result, ttft=scenario.ttft)
            deltas = int(figures["deltas"] or 0)
            row = {
                "deltas": deltas,
                "errors": figures["errors"],
                "deltas_per_s": figures["deltas_per_s"],
                "added_ms_p50": figures["added_ms_p50"],
                "added_ms_p99": figures["added_ms_p99"],
                "kaiwa_cpu_s": round(cpu_s, 3),
                "per_1000": _per_1000(cpu_s, deltas),
                "scrape_bytes": scraped,
            }
            measured[name].append(row)
            print(
                f"{time.monotonic() - started:5.0f}s {name:<8} deltas={deltas} "
                f"errors={row['errors']} deltas/s={row['deltas_per_s']} cpu-s={cpu_s:.2f} "
                f"per 1,000 deltas={row['per_1000']}" + (f" scrape={scraped} B" if scraped else ""),
                flush=True,
            )
            for error in load.first_errors(result):
                print("    error:", error, flush=True)
            await asyncio.sleep(0.5)  # let the servers settle between runs
    return measured


def micro(tokens: int, n: int = 20_000) -> dict[str, float]:
    """The metrics' own CPU, in this process: per answer (the observer's calls and the stream
    gauge), per request (kaiwa's outermost middleware with metrics against without, around an
    app that answers at once), per chunk (one more body message through it); and per 1,000
    deltas of answers of `tokens` deltas."""
    from kaiwa.protocol import TokenUsage
    from kaiwa.runtime.observe import AnswerInfo
    from kaiwa.server.metrics import Metrics
    from kaiwa.server.metrics_http import HttpMetrics
    from kaiwa.server.metrics_observer import MetricsObserver
    from kaiwa.server.request_id import RequestIdMiddleware

    metrics = Metrics()
    observer = MetricsObserver(metrics)
    info = AnswerInfo(
        response_id="r", chat_id=1, workspace_id="w", agent_id="a", llm_model="fake/bench"
    )
    usage = TokenUsage()

    def answer() -> None:
        metrics.live_streams.inc()
        watch = observer.answer(info)
        watch.created()
        with watch.model_call("fake", "bench") as call:
            call.first_token()
            call.usage(10, tokens)
        watch.finished("completed", None, usage)
        metrics.live_streams.dec()

    class Route:
        path_format = "/api/v1/chats/{chat_id}/messages"

    def app_of(chunks: int) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope["route"] = Route
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(chunks):
                await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        return app

    async def sent(message: Any) -> None:
        pass

    async def requests(app: Any, count: int) -> float:
        scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
        began = time.process_time()
        for _ in range(count):
            await app(dict(scope), None, sent)
        return time.process_time() - began

    def per(seconds: float, count: int) -> float:
        return seconds / count * 1e6

    began = time.process_time()
    for _ in range(n):
        answer()
    answer_us = per(time.process_time() - began, n)

    async def http() -> tuple[float, float]:
        counting = HttpMetrics(metrics)
        bare = RequestIdMiddleware(app_of(0))
        counted = RequestIdMiddleware(app_of(0), metrics=counting)
        request_us = per(await requests(counted, n) - await requests(bare, n), n)
        chunks = 100
        bare = RequestIdMiddleware(app_of(chunks))
        counted = RequestIdMiddleware(app_of(chunks), metrics=counting)
        extra = await requests(counted, n // 10) - await requests(bare, n // 10)
        chunk_us = per(extra, n // 10 * chunks) - request_us / chunks
        return request_us, max(chunk_us, 0.0)

    request_us, chunk_us = asyncio.run(http())
    answers = 1000 / tokens
    ms = (answers * (answer_us + request_us) + 1000 * chunk_us) / 1000
    return {
        "answer_us": round(answer_us, 2),
        "request_us": round(request_us, 2),
        "chunk_us": round(chunk_us, 3),
        "ms_per_1000": round(ms, 3),
    }


async def scrape(kaiwa: Kaiwa) -> int:
    """One Prometheus scrape of the server (it answers loopback without a token); its size."""
    async with httpx.AsyncClient(base_url=kaiwa.base_url, timeout=10) as client:
        reply = await client.get("/metrics")
        reply.raise_for_status()
        return len(reply.content)


async def otlp_sink(port: int) -> None:
    """An OTLP/HTTP receiver that takes every export and drops it (an empty protobuf answer
    is a full success), printing its path and size. Raw asyncio: it costs little next to the
    exporter it serves."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                await reader.readexactly(length)
                print(head.split(b" ", 2)[1].decode(), length, flush=True)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n"
                    b"content-length: 0\r\n\r\n"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def _per_1000(seconds: float, deltas: int) -> float | None:
    return round(seconds / deltas * 1000, 4) if deltas else None


def summary(measured: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per mode, their ratios to `off`, and each round's ratio."""
    medians = {
        name: {key: _median([r[key] for r in rows]) for key in ("per_1000", "deltas_per_s")}
        | {"errors": sum(r["errors"] for r in rows)}
        for name, rows in measured.items()
    }
    base = medians["off"]
    targets = []
    rounds = {}
    for name in measured:
        if name == "off":
            continue
        ratio = _ratio(medians[name]["per_1000"], base["per_1000"])
        clean = medians[name]["errors"] == base["errors"] == 0
        rounds[name] = [
            _ratio(b["per_1000"], a["per_1000"])
            for a, b in zip(measured["off"], measured[name], strict=True)
        ]
        if name not in BOUNDS:
            continue
        targets.append(
            {
                "target": f"CPU per 1,000 deltas, {name} / off",
                "value": ratio,
                "bound": f"≤ {BOUNDS[name]:g} ×",
                "pass": clean and ratio is not None and ratio <= BOUNDS[name],
            }
        )
    return {"medians": medians, "targets": targets, "round_ratios": rounds}


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 4) if known else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def markdown(report: dict[str, Any]) -> str:
    medians, measured = report["medians"], report["runs"]
    runs = len(measured["off"])
    lines = [
        f"{report['date']}, {report['machine']}, {report['set']} set in {report['wall_s']:.0f} s; "
        f"load average {report['load_average_before'][0]:.2f} before, "
        f"{report['load_average_after'][0]:.2f} after",
        "",
    ]
    if report["skipped"]:
        lines += [f"Skipped: {report['skipped']}.", ""]
    own = report["metrics_own_work"]
    if own is not None:
        lines += [
            f"The metrics' own work, timed in this process: {own['answer_us']:g} µs per answer, "
            f"{own['request_us']:g} µs per request, {own['chunk_us']:g} µs per chunk; per 1,000 "
            f"deltas of this scenario {own['ms_per_1000']:g} ms of CPU, "
            f"{100 * own.get('share_of_off', 0):.2f} % of `off`'s.",
            "",
        ]
    lines += ["| target | value | bound | |", "|---|--:|--:|---|"]
    for t in report["targets"]:
        verdict = "PASS" if t["pass"] else "**FAIL**"
        lines.append(f"| {t['target']} | {_num(t['value'])} | {t['bound']} | {verdict} |")
    lines += [
        "",
        f"{report['scenario']}, one `kaiwa serve` per mode on SQLite, {runs} runs each, the "
        f"order rotated each round; median (each run). CPU seconds of kaiwa over the run and "
        f"{SETTLE_S:g} s after it (with metrics, one scrape of `/metrics` included).",
        "",
        "| mode | server CPU-s per 1,000 deltas | deltas per second | streams with an error | "
        "over off (each round) |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, rows in measured.items():
        cells = [
            f"{_num(medians[name][key])} ({', '.join(_num(r[key]) for r in rows)})"
            for key in ("per_1000", "deltas_per_s")
        ]
        ratio = "1"
        if name != "off":
            value = _ratio(medians[name]["per_1000"], medians["off"]["per_1000"])
            ratio = f"{_num(value)} ({', '.join(map(_num, report['round_ratios'][name]))})"
        lines.append(f"| {name} | {' | '.join(cells)} | {medians[name]['errors']} | {ratio} |")
    return "\n".join(lines) + "\n"


_num = run.number


if __name__ == "__main__":
    main()
