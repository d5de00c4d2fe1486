"""kaiwa as many replicas on PostgreSQL and Redis behind HAProxy, in one run; targets PASS/FAIL.

    .venv/bin/python bench/replicas.py --quick     # about 1.5 minutes on 2 cores
    .venv/bin/python bench/replicas.py             # longer answers, more steps: ~2.5 minutes

Starts on loopback, each on a free port and stopped by its own pid at the end (also on
failure): `fake_model.py`; as the baseline, one `kaiwa serve` in the embedded default (SQLite,
no Redis, no load balancer), stopped before the rest starts; then a `redis-server` of its own
(no persistence), a fresh PostgreSQL database (dropped at the end), two `kaiwa serve` replicas
sharing them, and two HAProxy processes configured by their environment: one in front of
replica 1 alone, one in front of both, running `deploy/haproxy.cfg` unedited. It measures:

1. capacity: the most streams at 20 tokens/s all open at once with the plateau's p99 added
   latency ≤ 100 ms and no error (`run.py`'s held runs and search), for the embedded server,
   1 replica behind HAProxy and 2 replicas behind HAProxy; beside each run the CPU time of the
   load generator (this process), each replica, HAProxy, Redis, the database's backends and the
   fake model, all sharing the machine's cores;
2. a stop sent to the replica that does not produce the answer: a slow scripted answer is
   streamed from replica A, `POST …/cancel` goes to replica B; the time from sending it to B's
   reply and to `output_text.completed` (status `cancelled`) on A's stream;
3. a resume on replica B of a finished 10,000-event answer produced on A: `GET …/events` from
   cursor 0 to `[DONE]` (and, for comparison, on A, which still holds it in memory);
4. Redis memory (`MEMORY USAGE` of its keys) of a finished 300-delta answer produced through
   HTTP, during its retention.

Writes `bench/results/replicas.json` (every figure) and `replicas.md` (the tables, also
printed); the processes' output goes to `bench/results/replicas/`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import redis
import redis.asyncio

sys.path.insert(0, os.path.dirname(__file__))
import load
import replay
import run
from kaiwa_server import Kaiwa

from kaiwa.protocol import SSEDecoder

REPO = run.HERE.parent
HAPROXY_CONFIG = REPO / "deploy" / "haproxy.cfg"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
STARTUP_TIMEOUT = 30.0

STOP_P99_MS = 100.0
RESUME_MS = 50.0
MEMORY_KIB = 64.0
_DELTA = "response.output_text.delta"
_ENDINGS = ("response.output_text.completed", "response.error")


@dataclass(frozen=True)
class Plan:
    capacity_first: int
    """Streams of the first held run of each capacity search."""
    capacity_steps: int
    capacity_tokens: int
    stops: int
    resume_events: int
    resume_runs: int
    memory_answers: int
    memory_deltas: int = 300


QUICK = Plan(
    capacity_first=100,
    capacity_steps=5,
    capacity_tokens=30,
    stops=200,
    resume_events=10_000,
    resume_runs=10,
    memory_answers=5,
)
FULL = Plan(
    capacity_first=100,
    capacity_steps=7,
    capacity_tokens=60,
    stops=200,
    resume_events=10_000,
    resume_runs=10,
    memory_answers=20,
)


@dataclass(frozen=True)
class Deployment:
    """Where a capacity search sends its load, and the processes whose CPU each run reports."""

    name: str
    kaiwa: Kaiwa
    """`base_url`: the server, or the load balancer in front of the replicas."""
    processes: dict[str, int]
    """Name → pid."""
    database: str | None = None
    """The PostgreSQL database whose backends' CPU is reported too."""


@dataclass(frozen=True)
class Server:
    """A process serving HTTP on loopback: a replica, or HAProxy."""

    url: str
    pid: int


@dataclass
class Cluster:
    database_url: str
    database: str
    redis_url: str
    redis_pid: int
    replicas: list[Server] = field(default_factory=list)
    api_key: str = ""
    agent_id: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick set (~1.5 min, 2 cores)")
    parser.add_argument("--out", type=Path, default=run.RESULTS)
    parser.add_argument("--postgres", default=ADMIN_DSN, help="a DSN of a maintenance database")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    logs = args.out / "replicas"
    logs.mkdir(parents=True, exist_ok=True)
    # SIGTERM unwinds like Ctrl-C, so that every process started here is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    load_before = os.getloadavg()
    report: dict[str, Any] = {}
    with ExitStack() as stack:
        model_url, model_pid = stack.enter_context(run.bench_server("fake_model.py", log=logs))
        bench = Bench(model_url, model_pid, plan, started)
        with run.embedded_kaiwa(model_url, str(logs / "kaiwa.log")) as embedded:
            deployment = Deployment(
                "embedded", embedded, {"kaiwa": embedded.pid, "model": model_pid}
            )
            report["capacity"] = {"embedded": asyncio.run(bench.capacity(deployment))}
        cluster = stack.enter_context(_cluster(model_url, args.postgres, logs))
        balancers = {
            f"{n} replica{'s' if n > 1 else ''}": stack.enter_context(
                _haproxy(cluster.replicas[:n], HAPROXY_CONFIG, logs / f"haproxy{n}.log")
            )
            for n in (1, 2)
        }
        more = asyncio.run(bench.cluster(cluster, balancers))
        report["capacity"] |= more.pop("capacity")
        report |= more
        report["haproxy_config"] = str(HAPROXY_CONFIG.relative_to(REPO))
    report |= {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "set": "quick" if args.quick else "full",
        "plan": asdict(plan),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.monotonic() - started, 1),
    }
    report["targets"] = targets(report)
    (args.out / "replicas.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    text = markdown(report)
    (args.out / "replicas.md").write_text(text)
    print()
    print(text)


class Bench:
    def __init__(self, model_url: str, model_pid: int, plan: Plan, started: float) -> None:
        self.model_url = model_url
        self.model_pid = model_pid
        self.plan = plan
        self.started = started
        self.tags = itertools.count(1)

    async def cluster(self, cluster: Cluster, balancers: dict[str, Server]) -> dict[str, Any]:
        """`balancers`: HAProxy in front of 1 replica, of 2."""
        replicas = {f"replica {i}": r.pid for i, r in enumerate(cluster.replicas, start=1)}
        shared = {**replicas, "redis": cluster.redis_pid, "model": self.model_pid}
        report: dict[str, Any] = {"capacity": {}}

        def deployment(name: str, balancer: Server) -> Deployment:
            kaiwa = Kaiwa(balancer.url, cluster.api_key, cluster.agent_id)
            processes = {**shared, "haproxy": balancer.pid}
            return Deployment(name, kaiwa, processes, database=cluster.database)

        for name, balancer in balancers.items():
            report["capacity"][name] = await self.capacity(deployment(name, balancer))
        report["stop"] = await stops(cluster, self.plan.stops)
        self.say(f"stop elsewhere: {_brief_stop(report['stop'])}")
        report["resume"] = await asyncio.to_thread(resumes, cluster, self.plan)
        self.say(f"resume elsewhere: {report['resume']}")
        report["memory"] = await memory(cluster, self.plan.memory_answers, self.plan.memory_deltas)
        self.say(f"redis memory: {report['memory']}")
        return report

    async def warm(self, deployment: Deployment) -> run.KaiwaTargets:
        """Targets on `deployment`, after a short run that warms it up."""
        targets = run.KaiwaTargets(deployment.kaiwa)
        warm = run.WARMUP
        await run.run_scenario(await targets.target(warm, warm.model()), warm, self.model_url, None)
        return targets

    async def capacity(self, deployment: Deployment) -> dict[str, Any]:
        targets = await self.warm(deployment)

        async def attempt(n: int) -> dict[str, Any]:
            scenario = replace(run.concurrent(n, self.plan.capacity_tokens), name=f"{n} streams")
            return await self.held(deployment, targets, scenario)

        result = await run.search_capacity(
            attempt, self.plan.capacity_steps, first=self.plan.capacity_first
        )
        self.say(f"{deployment.name}: capacity {result['streams']} streams")
        return result

    async def held(
        self, deployment: Deployment, targets: run.KaiwaTargets, scenario: run.Scenario
    ) -> dict[str, Any]:
        tag = f"r{next(self.tags)}"
        setup = time.monotonic()
        target = await targets.target(scenario, scenario.model(tag))
        setup = time.monotonic() - setup
        before = cpu_times(deployment)
        database = deployment.database
        postgres = PostgresCpu.now(database) if database else None
        result = await run.run_scenario(target, scenario, self.model_url, tag)
        after = cpu_times(deployment)
        if database and postgres:
            after["postgres"] = PostgresCpu.now(database).since(postgres)
        summary: dict[str, Any] = dict(load.summarize(result, ttft=scenario.ttft))
        cpu = {"loader": summary["loader_cpu_s"]}
        cpu |= {name: round(after[name] - before.get(name, 0.0), 3) for name in after}
        servers = sum(v for k, v in cpu.items() if k not in ("loader", "model"))
        summary["cpu_s"] = cpu
        summary["servers_cpu_s_per_1000_deltas"] = (
            round(servers / summary["deltas"] * 1000, 4) if summary["deltas"] else None
        )
        summary["setup_s"] = round(setup, 2)
        verdict = "ok" if run.capacity_ok(summary) else "no"
        self.say(
            f"{deployment.name:<10} {scenario.name:<12} {verdict} errors={summary['errors']} "
            f"plateau p50={summary['plateau_added_ms_p50']}ms "
            f"p99={summary['plateau_added_ms_p99']}ms created p50={summary['created_ms_p50']}ms "
            f"cpu-s {_cpu_brief(cpu)}"
        )
        for error in load.first_errors(result):
            print("    error:", error, flush=True)
        await asyncio.sleep(0.5)  # let the servers settle between runs
        return summary

    def say(self, line: str) -> None:
        print(f"{time.monotonic() - self.started:5.0f}s {line}", flush=True)


def cpu_times(deployment: Deployment) -> dict[str, float]:
    """CPU seconds so far of each process that still runs."""
    times = {}
    for name, pid in deployment.processes.items():
        try:
            times[name] = load.cpu_seconds(pid)
        except FileNotFoundError:
            continue  # it exited: the run reports what killed it
    return times


@dataclass(frozen=True)
class PostgresCpu:
    """CPU seconds of the PostgreSQL backends serving `database`, found by their process
    titles, and what the postmaster collected from its children that exited: a backend that
    closes during a run (the pool's overflow connections do) is counted through it. That
    also counts any other backend that exits meanwhile (other databases', autovacuum's)."""

    backends: dict[int, float]
    reaped: float

    @classmethod
    def now(cls, database: str) -> PostgresCpu:
        backends: dict[int, float] = {}
        postmaster = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    title = f.read()
                if title.startswith(b"postgres:") and f" {database} ".encode() in title:
                    pid = int(entry.name)
                    backends[pid] = load.cpu_seconds(pid)
                    postmaster = postmaster or _stat(pid)[1]
            except (OSError, IndexError, ValueError):
                continue
        reaped = 0.0
        if postmaster:
            fields = _stat(postmaster)
            reaped = (fields[13] + fields[14]) / os.sysconf("SC_CLK_TCK")
        return cls(backends, reaped)

    def since(self, before: PostgresCpu) -> float:
        exited = sum(cpu for pid, cpu in before.backends.items() if pid not in self.backends)
        grown = sum(cpu - before.backends.get(pid, 0.0) for pid, cpu in self.backends.items())
        if not (before.reaped and self.reaped):
            return grown  # no backend, no postmaster found at one end
        return grown + max(0.0, self.reaped - before.reaped - exited)


def _stat(pid: int) -> list[int]:
    """The fields of /proc/<pid>/stat after the command, as numbers (the state as 0): ppid at
    1, utime 11, stime 12, cutime 13, cstime 14."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return [0, *(int(x) for x in fields[1:])]


def _cpu_brief(cpu: dict[str, float]) -> str:
    return " ".join(f"{name.replace(' ', '')}={seconds:g}" for name, seconds in cpu.items())


# ---------------------------------------------------------------- 2. a stop sent elsewhere


@dataclass
class StopSample:
    reply: float | None = None
    """Seconds from sending the cancel to the other replica's whole reply."""
    ended: float | None = None
    """Seconds from sending the cancel to `output_text.completed` on the owner's stream."""
    error: str | None = None


async def stops(cluster: Cluster, samples: int) -> dict[str, Any]:
    """`samples` stops, one after another, alternating which replica produces the answer."""
    owner = cluster.replicas[0]
    pieces = [{"text": f"第{n}文。"} for n in range(1, 201)]
    script = {"answer": [item for p in pieces for item in (p, {"delay": 0.05})]}  # 10 s
    agent = await _scripted_agent(owner.url, cluster.headers, "stop", script)
    chats = await load.ChatPool(owner.url, cluster.api_key).take(agent, samples)
    results: list[StopSample] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers=cluster.headers) as session:
        for i, chat in enumerate(chats):
            a, b = cluster.replicas[i % 2], cluster.replicas[(i + 1) % 2]
            try:
                async with asyncio.timeout(15):
                    results.append(await _stop(session, a.url, b.url, chat, agent))
            except (TimeoutError, aiohttp.ClientError) as exc:
                results.append(StopSample(error=f"{type(exc).__name__}: {exc}"))
    reply = [s.reply for s in results if s.reply is not None]
    ended = [s.ended for s in results if s.ended is not None]
    errors = [s.error for s in results if s.error]
    return {
        "samples": samples,
        "errors": len(errors),
        "first_errors": errors[:3],
        "reply_ms_p50": _ms(load.percentile(reply, 0.5)),
        "reply_ms_p99": _ms(load.percentile(reply, 0.99)),
        "reply_ms_max": _ms(max(reply, default=None)),
        "ended_ms_p50": _ms(load.percentile(ended, 0.5)),
        "ended_ms_p99": _ms(load.percentile(ended, 0.99)),
        "ended_ms_max": _ms(max(ended, default=None)),
    }


async def _stop(
    session: aiohttp.ClientSession, owner: str, other: str, chat: int, agent: str
) -> StopSample:
    body = {"message": "止めてください", "agent_id": agent}
    sample = StopSample()
    decoder = SSEDecoder()
    async with session.post(f"{owner}/api/v1/chats/{chat}/messages", json=body) as stream:
        if stream.status != 200:
            return StopSample(error=f"HTTP {stream.status}: {(await stream.text())[:200]}")
        response_id = stream.headers["x-kaiwa-response-id"]
        chunks = stream.content.iter_any()
        async for chunk in chunks:
            if any(e.event == _DELTA for e in decoder.decode(chunk)):
                break  # the producer runs: stop it now
        else:
            return StopSample(error="the stream ended before its first delta")
        path = f"/api/v1/chats/{chat}/responses/{response_id}/cancel"
        sent = time.perf_counter()
        cancel = asyncio.create_task(_cancel(session, other + path, sent))
        try:
            async for chunk in chunks:
                arrived = time.perf_counter()
                for event in decoder.decode(chunk):
                    if event.event in _ENDINGS and sample.ended is None:
                        status = json.loads(event.data).get("status")
                        if status != "cancelled":
                            sample.error = f"the owner's stream ended {event.event} {status}"
                        sample.ended = arrived - sent
            sample.reply, error = await cancel
        finally:
            cancel.cancel()
    if sample.ended is None:
        sample.error = "the owner's stream ended without output_text.completed"
    sample.error = sample.error or error
    return sample


async def _cancel(
    session: aiohttp.ClientSession, url: str, sent: float
) -> tuple[float, str | None]:
    async with session.post(url) as reply:
        body = await reply.read()
    replied = time.perf_counter() - sent
    if reply.status != 200:
        return replied, f"cancel: HTTP {reply.status}: {body[:200]!r}"
    status = json.loads(body)["data"]["status"]
    return replied, None if status == "cancelled" else f"cancel replied status {status}"


async def _scripted_agent(
    base_url: str, headers: dict[str, str], name: str, script: dict[str, Any]
) -> str:
    """A published agent on the scripted model playing `script`; its id."""
    body = {
        "name": name,
        "llm_model": "scripted/bench",
        "meta": {"model_settings": {"script": script}},
    }
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        agent_id = str(replay.data(await client.post("/api/v1/agents", json=body))["id"])
        replay.data(await client.post(f"/api/v1/agents/{agent_id}/publish"))
    return agent_id


def _brief_stop(s: dict[str, Any]) -> str:
    return (
        f"{s['samples']} samples, {s['errors']} errors; reply p50={s['reply_ms_p50']}ms "
        f"p99={s['reply_ms_p99']}ms; cancelled on the owner's stream p50={s['ended_ms_p50']}ms "
        f"p99={s['ended_ms_p99']}ms"
    )


# ---------------------------------------------------------------- 3. a resume elsewhere


def resumes(cluster: Cluster, plan: Plan) -> dict[str, Any]:
    """A finished answer of `plan.resume_events` produced on replica 1, replayed from cursor 0
    on replica 2 (read from Redis), then on replica 1 (from its memory, for comparison)."""
    a, b = cluster.replicas[0], cluster.replicas[1]
    with (
        httpx.Client(base_url=a.url, headers=cluster.headers, timeout=60) as owner,
        httpx.Client(base_url=b.url, headers=cluster.headers, timeout=60) as other,
    ):
        produced = replay.produce_over_http(owner, plan.resume_events)
        if isinstance(produced, str):
            return {"skipped": produced}
        result: dict[str, Any] = {"events": produced.events}
        for where, client in (("elsewhere", other), ("owner", owner)):
            timed = replay.time_replays(client, produced, plan.resume_runs)
            if isinstance(timed, str):
                return {"skipped": timed}
            seconds = timed[1]
            result[where] = {
                "runs": len(seconds),
                "median_ms": _ms(statistics.median(seconds)),
                "p99_ms": _ms(load.percentile(seconds, 0.99)),
            }
    return result


# ---------------------------------------------------------------- 4. Redis memory


async def memory(cluster: Cluster, answers: int, deltas: int) -> dict[str, Any]:
    """`MEMORY USAGE` of every key naming the answer, for `answers` finished answers of
    `deltas` Japanese deltas each, produced through HTTP on replica 1 (no title: exactly
    `response.created`, the deltas and `output_text.completed`)."""
    script = {"answer": [{"text": piece} for piece in replay.deltas(deltas)]}
    base_url = cluster.replicas[0].url
    agent = await _scripted_agent(base_url, cluster.headers, "memory", script)
    chats = await load.ChatPool(base_url, cluster.api_key).take(agent, answers)
    sizes: list[int] = []
    keys: dict[str, int] = {}
    stream_bytes = ttl_ms = 0
    async with (
        httpx.AsyncClient(base_url=base_url, headers=cluster.headers, timeout=60) as client,
        redis.asyncio.Redis.from_url(cluster.redis_url, socket_timeout=5) as store,
    ):
        for chat in chats:
            message = {"message": "営業時間は?", "agent_id": agent}
            async with client.stream("POST", f"/api/v1/chats/{chat}/messages", json=message) as r:
                r.raise_for_status()
                response_id = r.headers["x-kaiwa-response-id"]
                body = b"".join([chunk async for chunk in r.aiter_raw()])
            assert body.endswith(replay.DONE), body[-200:]
            names = sorted([name async for name in store.scan_iter(match=f"*{response_id}*")])
            keys = {name.decode(): int(await store.memory_usage(name, samples=0)) for name in names}
            sizes.append(sum(keys.values()))
            stream_bytes = len(body)
            ttl_ms = max([int(await store.pttl(name)) for name in names])
    return {
        "answers": answers,
        "deltas": deltas,
        "kib_mean": round(statistics.fmean(sizes) / 1024, 2),
        "kib_max": round(max(sizes) / 1024, 2),
        "keys_of_the_last": keys,
        "sse_kib_of_the_last": round(stream_bytes / 1024, 2),
        "ttl_s_of_the_last": round(ttl_ms / 1000),
    }


# ---------------------------------------------------------------- processes


@contextmanager
def _cluster(model_url: str, admin_dsn: str, logs: Path) -> Iterator[Cluster]:
    """Redis, a fresh database, two replicas sharing them (their key and demo agent made by
    `kaiwa init` first); all stopped, the database dropped, on exit."""
    with ExitStack() as stack:
        database_url, database = stack.enter_context(_postgres_database(admin_dsn))
        redis_url, redis_pid = stack.enter_context(redis_server(logs))
        cluster = Cluster(database_url, database, redis_url, redis_pid)
        config = logs / "kaiwa.toml"
        config.write_text(run.kaiwa_config(model_url))
        env = {name: value for name, value in os.environ.items() if not name.startswith("KAIWA_")}
        env |= {
            "KAIWA_CONFIG": str(config),
            "KAIWA_DATABASE_URL": database_url,
            "KAIWA_REDIS_URL": redis_url,
            "KAIWA_SHUTDOWN_GRACE": "2",
            "KAIWA_SHUTDOWN_DELAY": "0",
        }
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kaiwa-replicas-")))
        init = subprocess.run(
            [sys.executable, "-m", "kaiwa.cli", "init", "--json"],
            env={**env, "KAIWA_DATA_DIR": str(data / "init")},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        boot = json.loads(init.stdout.strip().splitlines()[-1])
        cluster.api_key, cluster.agent_id = boot["api_key"], boot["agent_id"]
        for index in (1, 2):
            replica_env = {**env, "KAIWA_DATA_DIR": str(data / f"replica{index}")}
            log = logs / f"replica{index}.log"
            cluster.replicas.append(stack.enter_context(_replica(replica_env, log)))
        yield cluster


@contextmanager
def _postgres_database(admin_dsn: str) -> Iterator[tuple[str, str]]:
    """A new, empty database, dropped (with FORCE) on exit: (SQLAlchemy URL, name)."""
    name = f"kaiwa_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(admin_dsn, f'CREATE DATABASE "{name}"'))
    server = admin_dsn.removeprefix("postgresql://").rsplit("/", 1)[0]
    try:
        yield f"postgresql+asyncpg://{server}/{name}", name
    finally:
        asyncio.run(_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(dsn: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        await connection.execute(statement, timeout=30)
    finally:
        await connection.close(timeout=10)


@contextmanager
def redis_server(logs: Path) -> Iterator[tuple[str, int]]:
    """A `redis-server` without persistence on a free loopback port: (URL, pid)."""
    port = run.free_port()
    argv = [shutil.which("redis-server") or "redis-server", "--port", str(port)]
    argv += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(logs)]
    with run.spawned(argv, log_path=logs / "redis.log") as proc:
        url = f"redis://127.0.0.1:{port}/0"
        with redis.Redis(port=port, socket_timeout=1) as client:
            _wait(lambda: _answers(client.ping), proc, f"redis-server on {port}")
        yield url, proc.pid


@contextmanager
def _replica(env: dict[str, str], log: Path) -> Iterator[Server]:
    port = run.free_port()
    argv = [sys.executable, "-m", "kaiwa.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with run.spawned(argv, log_path=log, env=env) as proc:
        base_url = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=1, trust_env=False) as probe:
            _wait(
                lambda: _answers(lambda: probe.get(f"{base_url}/readyz").status_code == 200),
                proc,
                f"replica on {port} ready (its log: {log})",
            )
        yield Server(base_url, proc.pid)


@contextmanager
def _haproxy(replicas: list[Server], config: Path, log: Path) -> Iterator[Server]:
    """HAProxy running `config` in front of `replicas`, configured by its environment."""
    port, stats = run.free_port(), run.free_port()
    env = {
        **os.environ,
        "KAIWA_LB_BIND": f"127.0.0.1:{port}",
        "KAIWA_LB_STATS_BIND": f"127.0.0.1:{stats}",
        "KAIWA_LB_CHECK_INTERVAL": "1s",
    }
    for index, replica in enumerate(replicas, start=1):
        env[f"KAIWA_REPLICA_{index}"] = replica.url.removeprefix("http://")
    haproxy = shutil.which("haproxy", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    argv = [haproxy or "haproxy", "-db", "-f", str(config)]
    with run.spawned(argv, log_path=log, env=env) as proc:
        with httpx.Client(timeout=1, trust_env=False) as probe:

            def all_up() -> bool:
                csv = probe.get(f"http://127.0.0.1:{stats}/;csv").text.splitlines()
                up = [line for line in csv if line.startswith("kaiwa_replicas,kaiwa")]
                return len(up) == len(replicas) and all(",UP," in line for line in up)

            _wait(lambda: _answers(all_up), proc, f"HAProxy on {port} sees its replicas UP")
        yield Server(f"http://127.0.0.1:{port}", proc.pid)


def _answers(check: Callable[[], object]) -> bool:
    try:
        return bool(check())
    except (OSError, httpx.TransportError, redis.RedisError):
        return False


def _wait(check: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"exited with {proc.returncode} before: {what}")
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"not within {STARTUP_TIMEOUT:g} s: {what}")


# ---------------------------------------------------------------- targets and the report


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    stop, resume, mem = report["stop"], report["resume"], report["memory"]
    clean = stop["errors"] == 0
    rows = []

    def add(label: str, value: float | None, bound: str, ok: bool) -> None:
        rows.append({"target": label, "value": value, "bound": bound, "pass": ok})

    for key, label in (("reply", "the other replica's reply"), ("ended", "cancelled on A")):
        p99 = stop[f"{key}_ms_p99"]
        add(
            f"stop sent to B, to {label}, p99 (ms)",
            p99,
            f"≤ {STOP_P99_MS:g}",
            clean and p99 is not None and p99 <= STOP_P99_MS,
        )
    median = resume.get("elsewhere", {}).get("median_ms")
    add(
        f"resume of {resume.get('events', 0):,} events on B, median (ms)",
        median,
        f"≤ {RESUME_MS:g}",
        median is not None and median <= RESUME_MS,
    )
    add(
        f"Redis memory per finished {mem['deltas']}-delta answer (KiB, worst)",
        mem["kib_max"],
        f"≤ {MEMORY_KIB:g}",
        mem["kib_max"] <= MEMORY_KIB,
    )
    return rows


def markdown(report: dict[str, Any]) -> str:
    cap = report["capacity"]
    base = cap["embedded"]["streams"]
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
    stop, resume, mem = report["stop"], report["resume"], report["memory"]
    lines += [
        "",
        f"Stop sent to the replica that does not produce the answer, {stop['samples']} samples "
        f"one after another ({stop['errors']} errors): its reply p50 {_num(stop['reply_ms_p50'])}"
        f" / p99 {_num(stop['reply_ms_p99'])} / max {_num(stop['reply_ms_max'])} ms; "
        f"`completed` (cancelled) on the owner's stream p50 {_num(stop['ended_ms_p50'])} / p99 "
        f"{_num(stop['ended_ms_p99'])} / max {_num(stop['ended_ms_max'])} ms.",
        "",
        _resume_line(resume),
        "",
        f"Redis memory of a finished {mem['deltas']}-delta answer ({mem['answers']} answers, "
        f"{mem['sse_kib_of_the_last']} KiB of SSE each, TTL {mem['ttl_s_of_the_last']} s left): "
        f"mean {mem['kib_mean']} KiB, worst {mem['kib_max']} KiB; keys "
        + ", ".join(f"`{k}` {v:,} B" for k, v in mem["keys_of_the_last"].items())
        + ".",
        "",
        "Capacity at 20 tok/s: the most streams all open at once with plateau p99 added latency "
        f"≤ {run.CAPACITY_P99_MS:g} ms and no error; embedded: one `kaiwa serve` on SQLite "
        f"without Redis, replicas: PostgreSQL and Redis behind HAProxy "
        f"(`{report['haproxy_config']}`). Figures of the run at that capacity; CPU seconds over "
        "the run, every process sharing the cores (server CPU: kaiwa, HAProxy, Redis and "
        "PostgreSQL, not the loader or the model).",
        "",
        "| deployment | streams | × embedded | plateau p50 / p99 (ms) | response.created p50 "
        "(ms) | server CPU-s per 1,000 deltas | CPU-s: loader | kaiwa (each replica) | HAProxy "
        "| Redis | PostgreSQL | model |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, result in cap.items():
        best = result["tried"].get(str(result["streams"]))
        ratio = f"{result['streams'] / base:.2f}" if base else "–"
        if best is None:
            lines.append(f"| {name} | 0 | {ratio} |" + " |" * 9)
            continue
        cpu = best["cpu_s"]
        kaiwa = " / ".join(
            _num(v) for k, v in cpu.items() if k == "kaiwa" or k.startswith("replica")
        )
        lines.append(
            f"| {name} | **{result['streams']}** | {ratio} | "
            f"{_num(best['plateau_added_ms_p50'])} / {_num(best['plateau_added_ms_p99'])} | "
            f"{_num(best['created_ms_p50'])} | {_num(best['servers_cpu_s_per_1000_deltas'])} | "
            f"{_num(cpu['loader'])} | {kaiwa} | "
            f"{_num(cpu.get('haproxy'))} | {_num(cpu.get('redis'))} | "
            f"{_num(cpu.get('postgres'))} | {_num(cpu.get('model'))} |"
        )
    lines.append("")
    for name, result in cap.items():
        tried = ", ".join(
            f"{n} {'ok' if r['pass'] else 'no'} ({_num(r['plateau_added_ms_p99'])} ms"
            + (f", {r['errors']} errors" if r["errors"] else "")
            + ")"
            for n, r in result["tried"].items()
        )
        lines.append(f"- {name}: tried {tried}")
    return "\n".join(lines) + "\n"


def _resume_line(resume: dict[str, Any]) -> str:
    if "skipped" in resume:
        return f"Resume skipped: {resume['skipped']}"
    b, a = resume["elsewhere"], resume["owner"]
    return (
        f"Resume from cursor 0 of a finished {resume['events']:,}-event answer, {b['runs']} runs: "
        f"on the other replica (from Redis) median {_num(b['median_ms'])} / p99 "
        f"{_num(b['p99_ms'])} ms; on its producer (from memory) median {_num(a['median_ms'])} "
        f"/ p99 {_num(a['p99_ms'])} ms."
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


_num = run.number


if __name__ == "__main__":
    main()
