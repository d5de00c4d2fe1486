"""The quick load benchmark: kaiwa against the floor, over the same fake model, in one run.

    python bench/run.py

Starts `fake_model.py`, `floor.py` and a real `kaiwa serve` (fresh data directory, a
`kaiwa.toml` naming the fake model as provider `fake`) on loopback, runs each scenario against
the floor then kaiwa with `load.py`, and writes `bench/results/latest.json`, `latest.md` (the
table, also printed) and, if matplotlib is installed, `latest.png` (added latency percentiles
against concurrency); kaiwa's own output goes to `kaiwa.log` there. Every process is stopped
at the end.

The scenarios' pace travels in the model's name (`bench-ttft0.2-tps20-n100`, see
`fake_model.py`), so one model process serves them all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, os.path.dirname(__file__))
import load
from kaiwa_server import Kaiwa, running_kaiwa

HERE = Path(__file__).parent
RESULTS = HERE / "results"


@dataclass(frozen=True)
class Scenario:
    name: str
    streams: int
    tps: float
    tokens: int
    ttft: float = 0.2
    ramp: float = 1.0

    @property
    def model(self) -> str:
        return f"bench-ttft{self.ttft}-tps{self.tps:g}-n{self.tokens}"

    @property
    def timeout(self) -> float:
        return self.ttft + self.tokens / self.tps + self.ramp + 60.0


QUICK = [
    Scenario("100 streams, 20 tok/s", streams=100, tps=20, tokens=100),
    Scenario("1,000 streams, 20 tok/s", streams=1000, tps=20, tokens=100),
    Scenario("saturation: 200 streams, 200 tok/s", streams=200, tps=200, tokens=200),
]
WARMUP = Scenario("warm-up", streams=5, tps=100, tokens=10, ramp=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with ExitStack() as stack:
        model_url, model_pid = stack.enter_context(_process("fake_model.py"))
        floor_url, floor_pid = stack.enter_context(_process("floor.py", "--model-url", model_url))
        args.out.mkdir(parents=True, exist_ok=True)
        kaiwa = stack.enter_context(_kaiwa(model_url, str(args.out / "kaiwa.log")))
        results = asyncio.run(_run_all(floor_url, floor_pid, kaiwa, model_pid))
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "scenarios": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2))
    table = markdown(results)
    (args.out / "latest.md").write_text(table)
    print(table)
    _plot(results, args.out / "latest.png")


async def _run_all(
    floor_url: str, floor_pid: int, kaiwa: Kaiwa, model_pid: int
) -> list[dict[str, object]]:
    results: list[dict[str, object]] = []
    for scenario in [WARMUP, *QUICK]:
        row: dict[str, object] = {"scenario": asdict(scenario) | {"name": scenario.name}}
        for name in ("floor", "kaiwa"):
            if name == "floor":
                target = load.Target(
                    "floor",
                    floor_url,
                    list(range(1, scenario.streams + 1)),
                    {"message": "bench", "model": scenario.model},
                    pid=floor_pid,
                )
            else:
                agent = await _agent(kaiwa, f"fake/{scenario.model}")
                target = await load.kaiwa_target(
                    kaiwa.base_url, kaiwa.api_key, agent, scenario.streams, pid=kaiwa.pid
                )
            model_cpu = load.cpu_seconds(model_pid)
            async with asyncio.timeout(scenario.timeout + 30):
                result = await load.run(
                    target, scenario.streams, ramp=scenario.ramp, stream_limit=scenario.timeout
                )
            summary = load.summarize(result, ttft=scenario.ttft)
            summary["model_cpu_s"] = round(load.cpu_seconds(model_pid) - model_cpu, 3)
            row[name] = summary
            errors = load.first_errors(result)
            print(f"{scenario.name:<36} {name:<6} {_brief(summary)}", flush=True)
            for error in errors:
                print("    error:", error, flush=True)
            await asyncio.sleep(1.0)  # let the servers settle between runs
        if scenario is not WARMUP:
            results.append(row)
    return results


def _brief(s: dict[str, float | int | None]) -> str:
    return (
        f"deltas={s['deltas']} errors={s['errors']} wall={s['wall_s']}s "
        f"cpu/1k={s['cpu_s_per_1000_deltas']} added p50={s['added_ms_p50']}ms "
        f"p99={s['added_ms_p99']}ms loader_cpu={s['loader_cpu_s']}s"
    )


METRICS = [
    ("server CPU-s per 1,000 deltas", "cpu_s_per_1000_deltas"),
    ("deltas per second", "deltas_per_s"),
    ("added latency per delta p50 (ms)", "added_ms_p50"),
    ("added latency per delta p99 (ms)", "added_ms_p99"),
    ("time to response.created p50 (ms)", "created_ms_p50"),
    ("time to response.created p99 (ms)", "created_ms_p99"),
    ("first delta over TTFT p50 (ms)", "first_delta_over_ttft_ms_p50"),
    ("first delta over TTFT p99 (ms)", "first_delta_over_ttft_ms_p99"),
    ("streams with an error", "errors"),
]


def markdown(results: list[dict[str, object]]) -> str:
    lines = [
        "| scenario | measure | kaiwa | floor | kaiwa / floor |",
        "|---|---|--:|--:|--:|",
    ]
    for row in results:
        scenario = row["scenario"]
        kaiwa, floor = row["kaiwa"], row["floor"]
        assert isinstance(scenario, dict)
        assert isinstance(kaiwa, dict)
        assert isinstance(floor, dict)
        for label, key in METRICS:
            k, f = kaiwa[key], floor[key]
            ratio = f"{k / f:.2f}" if isinstance(k, int | float) and f else ""
            lines.append(f"| {scenario['name']} | {label} | {_num(k)} | {_num(f)} | {ratio} |")
    return "\n".join(lines) + "\n"


def _num(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return "" if value is None else str(value)


def _plot(results: list[dict[str, object]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no PNG: matplotlib is not installed)")
        return
    paced = [r for r in results if r["scenario"]["tps"] == 20]  # type: ignore[index]
    paced.sort(key=lambda r: r["scenario"]["streams"])  # type: ignore[index]
    x = [r["scenario"]["streams"] for r in paced]  # type: ignore[index]
    fig, ax = plt.subplots(figsize=(6, 4))
    for target, colour in (("kaiwa", "tab:red"), ("floor", "tab:blue")):
        for key, style in (("added_ms_p50", "-o"), ("added_ms_p99", "--s")):
            y = [r[target][key] for r in paced]  # type: ignore[index]
            ax.plot(x, y, style, color=colour, label=f"{target} {key[-3:]}")
    ax.set_xscale("log")
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("added latency per delta (ms)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


@contextmanager
def _process(script: str, *extra: str) -> Iterator[tuple[str, int]]:
    """One of the bench's own servers on a free loopback port: (base URL, pid)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / script), "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, proc)
        base = f"http://127.0.0.1:{port}"
        yield (f"{base}/v1" if script == "fake_model.py" else base), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextmanager
def _kaiwa(model_url: str, log_path: str) -> Iterator[Kaiwa]:
    with tempfile.TemporaryDirectory() as config_dir:
        config = Path(config_dir) / "kaiwa.toml"
        config.write_text(
            f'[providers.fake]\ntype = "openai"\nbase_url = "{model_url}"\napi_key = "x"\n'
        )
        env = {"KAIWA_CONFIG": str(config), "KAIWA_SHUTDOWN_GRACE": "2"}
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


def _free_port() -> int:
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
