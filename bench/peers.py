"""kaiwa next to its peers (the floor, LiteLLM's proxy, LangGraph's server) over one fake model.

    .venv/bin/python bench/peers.py --quick         # the quick set: ~4 minutes on 2 cores
    .venv/bin/python bench/peers.py                 # the full set: longer answers
    .venv/bin/python bench/peers.py --install-only  # only the peers' virtualenvs (no lock needed)
    .venv/bin/python bench/peers.py --reinstall     # rebuild them first

The peers are installed by this script, once, each into its own virtualenv under
`bench/.peers/<name>/` (git-ignored) with `python -m venv` and pip, at the versions pinned below;
a virtualenv is reused while its recorded requirements match the pins. Then it starts, on
loopback, each on a free port and stopped by its own pid at the end (SIGTERM to its process
group, SIGKILL after 10 s; also on Ctrl-C or SIGTERM):

* `fake_model.py`, the one model every server streams from;
* `floor.py`, the least a relay can do (Starlette + httpx, kaiwa's frames);
* a real `kaiwa serve` (fresh SQLite data directory, the model as provider `fake`, an agent per
  model name, chats created before a run);
* LiteLLM's proxy (`litellm --config config.yaml`, one uvicorn worker): a `config.yaml` whose
  models are the ones this run asks for, each routed to `openai/<name>` at the fake model; a
  master key made for the run, no database; `POST /v1/chat/completions` with `stream: true`;
* LangGraph's agent server, in-memory (`langgraph dev --no-browser --no-reload --allow-blocking
  --n-jobs-per-worker 1000`): a generated `graph.py` whose one node awaits
  `langchain_openai.ChatOpenAI(base_url=<fake model>, streaming=True)`; a fresh thread per
  stream, created before a run, then `POST /threads/{id}/runs/stream` with `stream_mode:
  messages-tuple`. Without `--n-jobs-per-worker` the dev server runs one run at a time, and
  without `--allow-blocking` it wraps blocking calls in a development-time checker.

Nothing but loopback is reached while it runs: every `LANGSMITH_*`, `LANGCHAIN_*`,
`LANGGRAPH_*`, `LITELLM_*`, `OPENAI_*`, `OTEL_*` variable and any HTTP proxy is dropped from
the peers' environment, then `OFFLINE_ENV` below is set (no tracing, analytics, telemetry, version
check, cost-map or header downloads). Open connections to other addresses are looked for in each
server's process tree at the end, and reported.

Scenarios, each run against every server in turn: a warm-up; saturation (200 streams of 200
tokens, 400 in the full set, offered at 200 tokens/s each: more than a relay passes on 2 cores);
100 streams at 20 tokens/s (40 tokens, 100 in the full set), held at the model until all 100 are
open, then released together (`fake_model.py`'s `hold`); 50 new streams per second of one token
each (200 streams, 500 in the full set): what a request costs. Each delta's text is its emission
time at the model, so the added latency per delta is read from whatever frames a server sends; a
small reader per format picks the deltas out (kaiwa's `response.output_text.delta`, OpenAI
chunks, LangGraph's `messages` events) and `load.summarize` computes the figures.

Per server and scenario: CPU seconds per 1,000 deltas of its whole process tree (utime + stime,
and those of reaped children, of every process under its pid, from `/proc`, over the run and the
second after it), deltas per second (over the run's wall time), added latency per delta p50 and
p99, first delta over the model's TTFT p50 (not for held runs), errors; for the one-token answers
CPU milliseconds per stream instead; bytes on the wire per delta; each as a ratio to kaiwa's.
Also the CPU each uses idle (per second), and the load average before and after.

Writes `bench/results/peers.json` (every figure, the installed versions) and `peers.md` (the
table, also printed); the servers' output goes to `bench/results/peers/`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import httpx

sys.path.insert(0, os.path.dirname(__file__))
import load
import run
from kaiwa_server import Kaiwa

from kaiwa.protocol import SSEDecoder
from kaiwa.protocol.sse import ServerSentEvent

# ---------------------------------------------------------------- the peers and their pins

LITELLM = "1.108.7"
"""The newest `litellm[proxy]` whose dependencies PyPI serves (1.108.8 and later need a
`litellm-proxy` package and extras releases that are not published there)."""
LANGGRAPH_CLI = "0.4.40"
LANGGRAPH_API = "0.16.7"
LANGGRAPH_RUNTIME_INMEM = "0.36.7"
LANGGRAPH = "1.2.24"
LANGCHAIN_OPENAI = "1.8.1"

PEERS: dict[str, list[str]] = {
    "litellm": [f"litellm[proxy]=={LITELLM}"],
    "langgraph": [
        f"langgraph-cli[inmem]=={LANGGRAPH_CLI}",
        f"langgraph-api=={LANGGRAPH_API}",
        f"langgraph-runtime-inmem=={LANGGRAPH_RUNTIME_INMEM}",
        f"langgraph=={LANGGRAPH}",
        f"langchain-openai=={LANGCHAIN_OPENAI}",
    ],
}
"""Each peer's virtualenv under `PEERS_DIR` and what pip installs into it."""
REPORTED_PACKAGES = {
    "litellm": ["litellm", "openai", "fastapi", "uvicorn", "uvloop", "httpx", "aiohttp"],
    "langgraph": [
        "langgraph-cli",
        "langgraph-api",
        "langgraph-runtime-inmem",
        "langgraph",
        "langchain-core",
        "langchain-openai",
        "openai",
        "starlette",
        "uvicorn",
        "uvloop",
    ],
}

HERE = Path(__file__).parent
PEERS_DIR = HERE / ".peers"
REQUIREMENTS_FILE = "bench-requirements.txt"
"""Written into a peer's virtualenv once pip succeeded: the requirements it holds."""

OFFLINE_ENV = {
    # LiteLLM: no telemetry, and its bundled copies instead of downloads from GitHub (one
    # switch each; LITELLM_OFFLINE_MODE is the one switch of releases after the pinned one).
    "LITELLM_TELEMETRY": "False",
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    # LangGraph and LangChain: no LangSmith tracing, no CLI analytics, no PyPI version check.
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "OTEL_ENABLED": "false",
    "OTEL_SDK_DISABLED": "true",
    # Hugging Face tokenizers (LiteLLM imports them): the hub is never asked.
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}
DROPPED_ENV_PREFIXES = ("LANGSMITH_", "LANGCHAIN_", "LANGGRAPH_", "LITELLM_", "OPENAI_", "OTEL_")
DROPPED_ENV = {"http_proxy", "https_proxy", "all_proxy", "virtual_env"}
"""Dropped case-insensitively from the peers' environment, as are `DROPPED_ENV_PREFIXES`."""

LANGGRAPH_JOBS = 1000
"""`langgraph dev --n-jobs-per-worker`: runs at once (the dev server's default is 1)."""
SETTLE_S = 1.0
"""A run's server CPU is counted this long past its last stream too (work done after it)."""
STARTUP_S = 180.0
SERVERS = ("floor", "kaiwa", "litellm", "langgraph")
LABELS = {"floor": "floor", "kaiwa": "kaiwa", "litellm": "LiteLLM", "langgraph": "LangGraph"}
_STAMP = re.compile(r"<t=([0-9.]+)>")


# ---------------------------------------------------------------- scenarios


def held(streams: int, tokens: int) -> run.Scenario:
    """`streams` at 20 tokens/s, all open together for `tokens` of them (as run.py's)."""
    return run.Scenario(
        f"{streams:,} streams, 20 tok/s",
        streams=streams,
        tps=20,
        tokens=tokens,
        ramp=max(0.5, streams / 400),
        hold=True,
    )


def saturation(tokens: int) -> run.Scenario:
    return run.Scenario(
        "saturation: 200 streams, 200 tok/s", streams=200, tps=200, tokens=tokens, ramp=1.0
    )


def short_answers(streams: int, rate: float) -> run.Scenario:
    """New streams at `rate` per second, each a one-token answer: what a request costs."""
    return run.Scenario(
        f"{rate:g} new streams/s, 1 token each",
        streams=streams,
        tps=20,
        tokens=1,
        ramp=streams / rate,
    )


QUICK = [saturation(200), held(100, 40), short_answers(200, 50)]
FULL = [saturation(400), held(100, 100), short_answers(500, 50)]
WARMUP = run.Scenario("warm-up", streams=10, tps=100, tokens=20, ramp=0.2)


def stream_limit(scenario: run.Scenario) -> float:
    """Seconds a stream may take, generous enough for the slowest server to finish."""
    return scenario.ttft + scenario.tokens / scenario.tps + scenario.ramp + 180.0


def tag(server: str, index: int) -> str:
    """The hold tag of `server`'s run of scenario `index` (unique within a run)."""
    return f"{server[:2]}{index}"


def model_name(scenario: run.Scenario, server: str, index: int) -> str:
    return scenario.model(tag(server, index) if scenario.hold else None)


# ---------------------------------------------------------------- installing the peers


def ensure_peer(name: str, *, reinstall: bool) -> Path:
    """The virtualenv of peer `name`, made and filled by pip unless it already holds the pins."""
    venv = PEERS_DIR / name
    wanted = "\n".join(PEERS[name]) + "\n"
    marker = venv / REQUIREMENTS_FILE
    if not reinstall and marker.is_file() and marker.read_text() == wanted:
        return venv
    print(f"installing {' '.join(PEERS[name])} into {venv} ...", flush=True)
    started = time.monotonic()
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    subprocess.run([*pip, "--quiet", *PEERS[name]], check=True)
    marker.write_text(wanted)
    print(f"installed {name} in {time.monotonic() - started:.0f} s", flush=True)
    return venv


def installed_versions(venv: Path, packages: list[str]) -> dict[str, str]:
    """The versions of `packages` in `venv`, as its own Python sees them."""
    code = (
        "import json, importlib.metadata as m; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    )
    found = {_normalized(k): v for k, v in json.loads(out.stdout).items()}
    return {p: found[_normalized(p)] for p in packages if _normalized(p) in found}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def peer_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without anything that names a remote service, plus
    `OFFLINE_ENV` and `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(DROPPED_ENV_PREFIXES) and k.lower() not in DROPPED_ENV
    }
    return env | OFFLINE_ENV | (extra or {})


# ---------------------------------------------------------------- processes


@contextmanager
def spawned_group(
    argv: list[str], *, log_path: Path, env: dict[str, str], cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process in its own process group, its output in `log_path`, stopped at exit by its
    pid: SIGTERM to its group, then SIGKILL after 10 s (its workers go with it)."""
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            _signal_group(proc.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            _signal_group(proc.pid, signal.SIGKILL)  # stragglers in the group, if any
            proc.wait(timeout=5)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def wait_http(
    url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = STARTUP_S
) -> None:
    """Until `GET url` answers 200; exits if `proc` ends first or nothing answers in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early with {proc.returncode}: see its log")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"{what} did not answer at {url} within {timeout:.0f} s")


def tree_pids(root: int) -> list[int]:
    """`root` and every process under it, from the parent pids in `/proc/*/stat`."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def tree_cpu(root: int) -> float:
    """CPU seconds of `root`'s process tree: utime + stime of each live process, plus cutime +
    cstime (its children that exited and were waited for), so that nothing is counted twice."""
    ticks = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile: its parent's cutime has it once reaped
        ticks += sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def foreign_connections(root: int) -> list[str]:
    """TCP connections of `root`'s process tree to anything but loopback, open right now."""
    inodes: set[str] = set()
    for pid in tree_pids(root):
        try:
            for fd in os.scandir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            remote, inode = cols[2].split(":")[0], cols[9]
            if inode in inodes and not _loopback_or_unset(remote):
                found.append(f"{table.rsplit('/', 1)[1]} {cols[2]}")
    return found


def _loopback_or_unset(hex_address: str) -> bool:
    if set(hex_address) == {"0"}:
        return True  # a listening socket
    if len(hex_address) == 8:  # IPv4, little-endian: 127.x.x.x ends in 7F
        return hex_address.endswith("7F")
    if hex_address == "00000000000000000000000001000000":  # ::1
        return True
    # IPv4-mapped (::ffff:127.x.x.x)
    return hex_address.startswith("0000000000000000FFFF0000") and hex_address.endswith("7F")


# ---------------------------------------------------------------- the servers


@dataclass
class PeerStream(load.StreamResult):
    bytes_received: int = 0
    """Of the response body, every frame included."""


@dataclass(frozen=True)
class Request:
    url: str
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)


class Kind(Enum):
    """What a server-sent event is, to the reader."""

    DELTA = "delta"
    ERROR = "error"
    OTHER = "other"


class Server(Protocol):
    name: str
    pid: int

    def kind(self, event: ServerSentEvent) -> Kind:
        """What a server-sent event of this server is."""
        ...

    async def requests(self, scenario: run.Scenario, model: str) -> list[Request]:
        """One request per stream of `scenario` on `model`; made before the run (setup)."""
        ...


def kaiwa_kind(event: ServerSentEvent) -> Kind:
    if event.event == "response.output_text.delta":
        return Kind.DELTA
    return Kind.ERROR if event.event == "response.error" else Kind.OTHER


class Floor:
    name = "floor"

    def __init__(self, base_url: str, pid: int) -> None:
        self.base_url, self.pid = base_url, pid

    def kind(self, event: ServerSentEvent) -> Kind:
        return kaiwa_kind(event)

    async def requests(self, scenario: run.Scenario, model: str) -> list[Request]:
        body: dict[str, object] = {"message": "bench", "model": model}
        return [
            Request(f"{self.base_url}/api/v1/chats/{i}/messages", body)
            for i in range(1, scenario.streams + 1)
        ]


class KaiwaServer:
    name = "kaiwa"

    def __init__(self, kaiwa: Kaiwa) -> None:
        self.pid = kaiwa.pid
        self.targets = run.KaiwaTargets(kaiwa)

    def kind(self, event: ServerSentEvent) -> Kind:
        return kaiwa_kind(event)

    async def requests(self, scenario: run.Scenario, model: str) -> list[Request]:
        target = await self.targets.target(scenario, model)
        return [
            Request(f"{target.base_url}/api/v1/chats/{chat}/messages", target.body, target.headers)
            for chat in target.chat_ids
        ]


class LiteLLM:
    """OpenAI chunks: `data: {chunk}` without event names, then `data: [DONE]`."""

    name = "litellm"

    def __init__(self, base_url: str, pid: int, master_key: str) -> None:
        self.base_url, self.pid = base_url, pid
        self.headers = {"authorization": f"Bearer {master_key}"}

    def kind(self, event: ServerSentEvent) -> Kind:
        if event.data.startswith('{"error"'):
            return Kind.ERROR
        return Kind.DELTA if "<t=" in event.data else Kind.OTHER

    async def requests(self, scenario: run.Scenario, model: str) -> list[Request]:
        body: dict[str, object] = {
            "model": model,
            "messages": [{"role": "user", "content": "bench"}],
            "stream": True,
        }
        url = f"{self.base_url}/v1/chat/completions"
        return [Request(url, body, self.headers)] * scenario.streams


class LangGraph:
    """`event: metadata` (the run's id), then `event: messages` with `[chunk, metadata]`."""

    name = "langgraph"

    def __init__(self, base_url: str, pid: int) -> None:
        self.base_url, self.pid = base_url, pid

    def kind(self, event: ServerSentEvent) -> Kind:
        if event.event == "messages":
            return Kind.DELTA
        return Kind.ERROR if event.event == "error" else Kind.OTHER

    async def requests(self, scenario: run.Scenario, model: str) -> list[Request]:
        threads = await self._threads(scenario.streams)
        body: dict[str, object] = {
            "assistant_id": "bench",
            "input": {"messages": [{"role": "user", "content": "bench"}]},
            "stream_mode": ["messages-tuple"],
            "config": {"configurable": {"model": model}},
        }
        return [Request(f"{self.base_url}/threads/{t}/runs/stream", body) for t in threads]

    async def _threads(self, n: int) -> list[str]:
        """`n` new threads: each run starts from one message, not a growing history."""
        gate = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=60) as client:

            async def new() -> str:
                async with gate:
                    r = await client.post("/threads", json={})
                    r.raise_for_status()
                    return str(r.json()["thread_id"])

            return list(await asyncio.gather(*(new() for _ in range(n))))


# ---------------------------------------------------------------- starting the peers

GRAPH_PY = '''\
"""The bench graph: one node that streams the fake model through ChatOpenAI."""

from langchain_core.runnables import RunnableConfig
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph

MODEL_URL = {model_url!r}
_models: dict[str, ChatOpenAI] = {{}}


def _model(name: str) -> ChatOpenAI:
    if name not in _models:
        _models[name] = ChatOpenAI(
            model=name, base_url=MODEL_URL, api_key="x", streaming=True, max_retries=0
        )
    return _models[name]


async def call_model(state: MessagesState, config: RunnableConfig) -> dict:
    name = config.get("configurable", {{}}).get("model", "bench")
    reply = await _model(name).ainvoke(state["messages"], config)
    return {{"messages": [reply]}}


builder = StateGraph(MessagesState)
builder.add_node("model", call_model)
builder.add_edge(START, "model")
graph = builder.compile()
'''


@contextmanager
def litellm_proxy(venv: Path, model_url: str, models: list[str], logs: Path) -> Iterator[LiteLLM]:
    """LiteLLM's proxy with `models`, each routed to the same name at the fake model."""
    with tempfile.TemporaryDirectory(prefix="bench-litellm-") as tmp:
        config = {
            "model_list": [
                {
                    "model_name": m,
                    "litellm_params": {
                        "model": f"openai/{m}",
                        "api_base": model_url,
                        "api_key": "x",
                    },
                }
                for m in models
            ],
            "litellm_settings": {"telemetry": False},
        }
        path = Path(tmp) / "config.yaml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        key = "sk-" + secrets.token_hex(32)  # it refuses to start without one
        port = run.free_port()
        argv = [str(venv / "bin" / "litellm"), "--config", str(path)]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
        env = peer_env({"LITELLM_MASTER_KEY": key})
        with spawned_group(argv, log_path=logs / "litellm.log", env=env, cwd=Path(tmp)) as proc:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/health/liveliness", proc, "LiteLLM")
            yield LiteLLM(base, proc.pid, key)


@contextmanager
def langgraph_server(venv: Path, model_url: str, logs: Path) -> Iterator[LangGraph]:
    """`langgraph dev` in memory on a generated `graph.py` (graph id `bench`)."""
    with tempfile.TemporaryDirectory(prefix="bench-langgraph-") as tmp:
        root = Path(tmp)
        (root / "graph.py").write_text(GRAPH_PY.format(model_url=model_url))
        spec = {
            "dependencies": ["."],
            "graphs": {"bench": "./graph.py:graph"},
            "disable_persistence": True,
        }
        (root / "langgraph.json").write_text(json.dumps(spec, indent=2))
        port = run.free_port()
        argv = [str(venv / "bin" / "langgraph"), "dev", "--config", "langgraph.json"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"]
        argv += ["--allow-blocking", "--n-jobs-per-worker", str(LANGGRAPH_JOBS)]
        log = logs / "langgraph.log"
        with spawned_group(argv, log_path=log, env=peer_env(), cwd=root) as proc:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/ok", proc, "LangGraph")
            yield LangGraph(base, proc.pid)


# ---------------------------------------------------------------- the load


async def run_streams(
    server: Server, requests: list[Request], *, ramp: float, limit: float
) -> load.RunResult:
    """Every request at once (starts spread over `ramp` seconds), each read to its end;
    `server_cpu` is its process tree's, over the run and `SETTLE_S` after it."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=limit)
    loader_start = resource.getrusage(resource.RUSAGE_SELF)
    cpu_start = tree_cpu(server.pid)
    start = time.monotonic()
    n = len(requests)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        results = await asyncio.gather(
            *(_stream(session, server, r, ramp * i / max(n, 1)) for i, r in enumerate(requests))
        )
    wall = time.monotonic() - start
    await asyncio.sleep(SETTLE_S)
    cpu = tree_cpu(server.pid) - cpu_start
    loader_end = resource.getrusage(resource.RUSAGE_SELF)
    loader_cpu = (loader_end.ru_utime + loader_end.ru_stime) - (
        loader_start.ru_utime + loader_start.ru_stime
    )
    return load.RunResult(list(results), wall, cpu, loader_cpu)


async def _stream(
    session: aiohttp.ClientSession, server: Server, request: Request, delay: float
) -> load.StreamResult:
    """One stream read to its end, as `load._stream` does, but in `server`'s format: `created`
    is its first event of any kind; a delta's stamps seen before on the stream are skipped."""
    await asyncio.sleep(delay)
    result = PeerStream()
    decoder = SSEDecoder()
    seen: set[str] = set()
    sent = time.monotonic()
    try:
        async with session.post(request.url, json=request.body, headers=request.headers) as r:
            if r.status != 200:
                result.error = f"HTTP {r.status}: {(await r.text())[:200]}"
                return result
            async for chunk in r.content.iter_any():
                arrived = time.time()
                result.bytes_received += len(chunk)
                now = time.monotonic() - sent
                for event in decoder.decode(chunk):
                    if result.created is None:
                        result.created, result.opened_at = now, arrived
                    kind = server.kind(event)
                    if kind is Kind.DELTA:
                        stamps = [s for s in _STAMP.findall(event.data) if s not in seen]
                        if not stamps:
                            continue
                        seen.update(stamps)
                        result.delta_events += 1
                        if result.first_delta is None:
                            result.first_delta = now
                        for stamp in stamps:
                            emitted = float(stamp)
                            result.emitted.append(emitted)
                            result.latencies.append(arrived - emitted)
                    elif kind is Kind.ERROR and result.error is None:
                        result.error = event.data[:200]
    except (aiohttp.ClientError, TimeoutError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.closed_at = time.time()
    return result


class Bench:
    def __init__(self, servers: list[Server], model_url: str, model_pid: int) -> None:
        self.servers = servers
        self.model_url = model_url
        self.model_pid = model_pid
        self.started = time.monotonic()

    async def run_all(self, scenarios: list[run.Scenario]) -> dict[str, Any]:
        for server in self.servers:
            await self.one(server, WARMUP, 0, quiet=True)
        report: dict[str, Any] = {"idle_cpu_s_per_s": await self.idle()}
        report["scenarios"] = []
        for index, scenario in enumerate(scenarios, start=1):
            row: dict[str, Any] = {"scenario": asdict(scenario)}
            for server in self.servers:
                row[server.name] = await self.one(server, scenario, index)
            report["scenarios"].append(row)
        report["processes"] = {s.name: len(tree_pids(s.pid)) for s in self.servers}
        report["foreign_connections"] = {s.name: foreign_connections(s.pid) for s in self.servers}
        return report

    async def idle(self, seconds: float = 3.0) -> dict[str, float]:
        """CPU seconds per second each server spends with nothing to do (after the warm-up)."""
        await asyncio.sleep(1.0)
        before = {s.name: tree_cpu(s.pid) for s in self.servers}
        await asyncio.sleep(seconds)
        return {
            s.name: round((tree_cpu(s.pid) - before[s.name]) / seconds, 4) for s in self.servers
        }

    async def one(
        self, server: Server, scenario: run.Scenario, index: int, *, quiet: bool = False
    ) -> dict[str, Any]:
        model = model_name(scenario, server.name, index)
        setup = time.monotonic()
        requests = await server.requests(scenario, model)
        setup = time.monotonic() - setup
        model_cpu = load.cpu_seconds(self.model_pid)
        limit = stream_limit(scenario)
        async with asyncio.timeout(limit + 60):
            running = asyncio.create_task(
                run_streams(server, requests, ramp=scenario.ramp, limit=limit)
            )
            if scenario.hold:
                await load.release_when_held(
                    self.model_url, tag(server.name, index), scenario.streams
                )
            result = await running
        summary: dict[str, Any] = dict(load.summarize(result, ttft=scenario.ttft))
        summary["deltas_offered"] = scenario.streams * scenario.tokens
        cpu, deltas = result.server_cpu or 0.0, int(summary["deltas"] or 0)
        summary["cpu_ms_per_stream"] = round(cpu * 1000 / scenario.streams, 2)
        received = sum(getattr(s, "bytes_received", 0) for s in result.streams)
        summary["wire_bytes_per_delta"] = round(received / deltas) if deltas else None
        summary["model_cpu_s"] = round(load.cpu_seconds(self.model_pid) - model_cpu, 3)
        summary["setup_s"] = round(setup, 2)
        if not quiet:
            at = time.monotonic() - self.started
            print(f"{at:5.0f}s {scenario.name:<36} {server.name:<9} {_brief(summary)}", flush=True)
        for error in load.first_errors(result):
            print(f"    {server.name} error: {error}", flush=True)
        await asyncio.sleep(0.5)  # let the servers settle between runs
        return summary


def _brief(s: dict[str, Any]) -> str:
    return (
        f"deltas={s['deltas']}/{s['deltas_offered']} errors={s['errors']} wall={s['wall_s']}s "
        f"cpu/1k={s['cpu_s_per_1000_deltas']} added p50={s['added_ms_p50']}ms "
        f"p99={s['added_ms_p99']}ms first-over-ttft p50={s['first_delta_over_ttft_ms_p50']}ms "
        f"loader_cpu={s['loader_cpu_s']}s"
    )


# ---------------------------------------------------------------- main and the report


def _long(scenario: run.Scenario) -> bool:
    return scenario.tokens > 1


def _short(scenario: run.Scenario) -> bool:
    return scenario.tokens == 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick set (~4 min, 2 cores)")
    parser.add_argument("--reinstall", action="store_true", help="rebuild the peers' venvs")
    parser.add_argument("--install-only", action="store_true", help="install, then stop")
    parser.add_argument("--out", type=Path, default=run.RESULTS)
    args = parser.parse_args()
    venvs = {name: ensure_peer(name, reinstall=args.reinstall) for name in PEERS}
    if args.install_only:
        return
    versions = {name: installed_versions(venvs[name], REPORTED_PACKAGES[name]) for name in PEERS}
    scenarios = QUICK if args.quick else FULL
    logs = args.out / "peers"
    logs.mkdir(parents=True, exist_ok=True)
    # SIGTERM unwinds like Ctrl-C, so that every process started here is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    load_before = os.getloadavg()
    litellm_models = [model_name(s, "litellm", i) for i, s in enumerate([WARMUP, *scenarios])]
    with ExitStack() as stack:
        model_url, model_pid = stack.enter_context(run.bench_server("fake_model.py", log=logs))
        floor_url, floor_pid = stack.enter_context(
            run.bench_server("floor.py", "--model-url", model_url, log=logs)
        )
        kaiwa = stack.enter_context(run.embedded_kaiwa(model_url, str(logs / "kaiwa.log")))
        lite = stack.enter_context(litellm_proxy(venvs["litellm"], model_url, litellm_models, logs))
        graph = stack.enter_context(langgraph_server(venvs["langgraph"], model_url, logs))
        servers: list[Server] = [Floor(floor_url, floor_pid), KaiwaServer(kaiwa), lite, graph]
        print(f"{time.monotonic() - started:5.0f}s servers up", flush=True)
        measured = asyncio.run(Bench(servers, model_url, model_pid).run_all(scenarios))
    report: dict[str, Any] = {
        **run.run_facts(quick=args.quick, load_before=load_before, started=started),
        "versions": versions,
        **measured,
    }
    (args.out / "peers.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (args.out / "peers.md").write_text(text)
    print()
    print(text)
    for name, found in report["foreign_connections"].items():
        if found:
            print(f"WARNING: {name} holds connections beyond loopback: {', '.join(found)}")


ROWS: list[tuple[str, str, Callable[[run.Scenario], bool]]] = [
    ("server CPU-s per 1,000 deltas (process tree)", "cpu_s_per_1000_deltas", _long),
    ("server CPU-ms per stream (process tree)", "cpu_ms_per_stream", _short),
    ("deltas per second", "deltas_per_s", _long),
    ("added latency per delta p50 (ms)", "added_ms_p50", lambda s: True),
    ("added latency per delta p99 (ms)", "added_ms_p99", lambda s: True),
    ("… all streams open: added latency p99 (ms)", "plateau_added_ms_p99", lambda s: s.hold),
    ("first delta over TTFT p50 (ms)", "first_delta_over_ttft_ms_p50", lambda s: not s.hold),
    ("first delta over TTFT p99 (ms)", "first_delta_over_ttft_ms_p99", _short),
    ("bytes on the wire per delta", "wire_bytes_per_delta", lambda s: _long(s) and not s.hold),
    ("deltas received", "deltas", lambda s: True),
    ("streams with an error", "errors", lambda s: True),
]
NO_RATIO = {"deltas", "errors"}


def markdown(report: dict[str, Any]) -> str:
    names = [n for n in SERVERS if n in report["scenarios"][0]]
    v = report["versions"]
    lines = [
        f"{report['date']}, {report['machine']}, {report['set']} set in {report['wall_s']:.0f} s; "
        f"load average {report['load_average_before'][0]:.2f} before, "
        f"{report['load_average_after'][0]:.2f} after. LiteLLM {v['litellm'].get('litellm')}, "
        f"langgraph-api {v['langgraph'].get('langgraph-api')} (langgraph "
        f"{v['langgraph'].get('langgraph')}, langchain-openai "
        f"{v['langgraph'].get('langchain-openai')}). In brackets: the ratio to kaiwa.",
        "",
        "| scenario | measure | " + " | ".join(LABELS[n] for n in names) + " |",
        "|---|---|" + "--:|" * len(names),
    ]
    for row in report["scenarios"]:
        scenario = run.Scenario(**row["scenario"])
        label = scenario.name
        if not scenario.hold and _long(scenario):
            label = f"{scenario.name}, {scenario.tokens} tokens each"
        for text, key, shown in ROWS:
            if not shown(scenario):
                continue
            kaiwa = row["kaiwa"][key] if "kaiwa" in row else None
            cells = []
            for name in names:
                value = row[name][key]
                cell = run.number(value)
                if key == "deltas":
                    cell += f" / {run.number(row[name]['deltas_offered'])}"
                elif (
                    name != "kaiwa"
                    and key not in NO_RATIO
                    and isinstance(value, int | float)
                    and kaiwa
                ):
                    cell += f" ({value / kaiwa:.2f})"
                cells.append(cell)
            lines.append(f"| {label} | {text} | " + " | ".join(cells) + " |")
    idle = report["idle_cpu_s_per_s"]
    procs = report["processes"]
    lines += [
        "",
        "Idle, after the warm-up: "
        + ", ".join(
            f"{LABELS[n]} {idle[n] * 1000:.0f} ms CPU per second ({procs[n]} "
            f"process{'es' if procs[n] > 1 else ''})"
            for n in names
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
