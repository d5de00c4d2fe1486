"""The scale rig: a Redis server, a PostgreSQL database, kaiwa replicas and a load balancer, all
real processes on free loopback ports.

    with start_cluster(root, admin_dsn=dsn, replicas=3) as cluster:
        agent = cluster.create_agent("slow", slow_script(20, 0.05).script)
        chat = cluster.create_chat(agent)
        cluster.lb.base_url                    # HAProxy running deploy/haproxy.cfg
        cluster.replicas[1].kill()             # SIGKILL; .stop() is SIGTERM and wait; .restart()
        cluster.redis.pause(2.0)               # CLIENT PAUSE; .restart(), .kill_pubsub_clients()
        cluster.heal()                         # everything up again, as a test expects to find it

Every process is started by the rig, writes its output to `<name>.log` in its own directory, and
is stopped by its own pid (SIGTERM, then SIGKILL after a bounded wait) when its cluster stops,
or at interpreter exit if a test run was interrupted. `running_services()` lists what runs, so
that a failed test's report can carry their logs.

Replicas share the database and Redis; each has its own port, data directory and log. The
database is migrated and given a key and a demo agent by `kaiwa init --json` before any replica
starts, so no replica prints the first-run banner.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
HAPROXY_CONFIG = REPO / "deploy" / "haproxy.cfg"
NGINX_CONFIG = REPO / "deploy" / "nginx.conf"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
HTTP_TIMEOUT = 10.0
LB_CHECK_INTERVAL = "200ms"

# Fast enough that deaths are noticed within a couple of seconds, slow enough that a loaded
# 2-core CI machine does not presume a busy replica dead. Modules override through `scale_env`.
REPLICA_ENV = {
    "KAIWA_HEARTBEAT_INTERVAL": "0.25",
    "KAIWA_HEARTBEAT_TTL": "2",
    "KAIWA_SWEEP_INTERVAL": "0.25",
    "KAIWA_CHECKPOINT_INTERVAL": "0.2",
    "KAIWA_PING_INTERVAL": "0.5",
    "KAIWA_SHUTDOWN_GRACE": "10",
    # Three replicas and the suites' own connections stay well under PostgreSQL's default
    # max_connections (100).
    "KAIWA_DATABASE_POOL_SIZE": "5",
    "KAIWA_DATABASE_MAX_OVERFLOW": "15",
    # Two of HAProxy's health checks (LB_CHECK_INTERVAL) and a margin: out of rotation first.
    "KAIWA_SHUTDOWN_DELAY": "1.5",
    "KAIWA_EMBEDDINGS__PROVIDER": "none",
}

T = TypeVar("T")
_RUNNING: list[Service] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], T],
    *,
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.05,
) -> T:
    """Poll `check` until it returns something truthy (returned); fail after `timeout` seconds,
    saying `what` was awaited (a callable is asked only then, to show the state at that time)."""
    ends_at = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > ends_at:
            raise AssertionError(f"not within {timeout:g} s: {what() if callable(what) else what}")
        time.sleep(interval)


def running_services() -> list[Service]:
    return list(_RUNNING)


# -- processes ------------------------------------------------------------------------------


@dataclass(repr=False)
class Service:
    """One process of the rig, with its log file; stopped by its pid only."""

    name: str
    root: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    suspended: bool = False
    """Set by SIGSTOP, cleared by SIGCONT: a suspended process is resumed before it is stopped."""
    _log_start: int = 0

    def __repr__(self) -> str:
        pid = self.process.pid if self.process is not None else None
        state = "running" if self.running else "stopped"
        return f"<{self.name} pid={pid} {state}{' suspended' if self.suspended else ''}>"

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self, *, since_start: bool = False) -> str:
        """The whole log (every start of this service), or only what its last start wrote."""
        try:
            with self.log_path.open("rb") as log:
                if since_start:
                    log.seek(self._log_start)
                return log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _launch(self, argv: Sequence[str]) -> None:
        assert not self.running, f"{self.name} is already running"
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {' '.join(argv)}\n".encode())
            log.flush()
            self._log_start = log.tell()
            self.process = subprocess.Popen(
                list(argv),
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.suspended = False
        if self not in _RUNNING:
            _RUNNING.append(self)

    def send_signal(self, signum: int) -> None:
        """Send a signal to this process (SIGSTOP and SIGCONT are remembered)."""
        assert self.process is not None, f"{self.name} was never started"
        assert self.running, f"{self.name} is not running"
        self.process.send_signal(signum)
        if signum == signal.SIGSTOP:
            self.suspended = True
        elif signum == signal.SIGCONT:
            self.suspended = False

    def kill(self, signum: int = signal.SIGKILL) -> None:
        """Send `signum`; for SIGKILL, also wait until the process is gone."""
        self.send_signal(signum)
        if signum == signal.SIGKILL:
            assert self.process is not None
            self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self, *, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM (after SIGCONT if suspended), wait; SIGKILL past `timeout`. The exit status."""
        process = self.process
        if self in _RUNNING:
            _RUNNING.remove(self)
        if process is None:
            return None
        if process.poll() is None:
            if self.suspended:
                process.send_signal(signal.SIGCONT)
                self.suspended = False
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        return process.returncode


@atexit.register
def _kill_leftovers() -> None:
    # A last resort when pytest is interrupted before the fixtures' teardown ran.
    for service in list(_RUNNING):
        if service.process is not None and service.process.poll() is None:
            service.process.kill()


@dataclass(repr=False)
class RedisServer(Service):
    """`redis-server` without persistence: a restart comes back empty, as after a crash."""

    port: int = 0

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        self._launch(
            [
                binary("redis-server") or "redis-server",
                "--port", str(self.port),
                "--bind", HOST,
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.root),
            ]
        )  # fmt: skip
        wait_until(self.ping, timeout=STARTUP_TIMEOUT, what=f"redis on port {self.port} answers")

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def ping(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def pause(self, seconds: float) -> None:
        """`CLIENT PAUSE` every client (reads too) for `seconds`; returns at once."""
        with self.client() as client:
            client.execute_command("CLIENT", "PAUSE", int(seconds * 1000), "ALL")

    def unpause(self) -> None:
        with self.client() as client:
            client.execute_command("CLIENT", "UNPAUSE")

    def kill_pubsub_clients(self) -> int:
        """`CLIENT KILL TYPE pubsub`: drop every subscriber's connection; how many there were."""
        with self.client() as client:
            return int(client.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))

    def restart(self, *, down_for: float = 0.0, crash: bool = True) -> None:
        """Stop (SIGKILL when `crash`, else SIGTERM), stay down `down_for` s, start on the same
        port, empty."""
        if self.running:
            if crash:
                self.kill()
            else:
                self.stop()
        time.sleep(down_for)
        self.start()


@dataclass(repr=False)
class Replica(Service):
    """One `kaiwa serve` process of the cluster."""

    port: int = 0
    index: int = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self, *, may_move: bool = False) -> None:
        """Start `kaiwa serve` and wait until `/readyz` answers 200 (bounded).

        `may_move`: when the port was taken since it was chosen, take another one (only before the
        load balancer knows the address).
        """
        for _attempt in range(3):
            self.launch()
            if self.wait_ready(fail=False):
                return
            if not (may_move and "address already in use" in self.log_text(since_start=True)):
                break
            self.port = free_port()
        self.stop()
        raise AssertionError(
            f"replica {self.name} did not become ready; its log:\n{self.log_text()}"
        )

    def launch(self) -> None:
        """Start the process without waiting for it (see `wait_ready`)."""
        self._launch(
            [sys.executable, "-m", "kaiwa.cli", "serve", "--host", HOST, "--port", str(self.port)]
        )

    def wait_ready(self, *, timeout: float = STARTUP_TIMEOUT, fail: bool = True) -> bool:
        # Another process may answer on a port we failed to bind: our own log must say we bound it.
        bound = f"Uvicorn running on {self.base_url}"
        ends_at = time.monotonic() + timeout
        with httpx.Client(timeout=1.0, trust_env=False) as probe:
            while time.monotonic() < ends_at and self.running:
                if bound in self.log_text(since_start=True):
                    with contextlib.suppress(httpx.TransportError):
                        if probe.get(f"{self.base_url}/readyz").status_code == 200:
                            return True
                time.sleep(0.05)
        if fail:
            raise AssertionError(f"replica {self.name} not ready; its log:\n{self.log_text()}")
        return False

    def restart(self) -> None:
        """Stop (SIGTERM and wait) if running, then start again on the same port."""
        self.stop()
        self.start()

    def requests(self, method: str = "", path_prefix: str = "/api/") -> list[str]:
        """Access-log lines of every start of this replica: `requests("POST", "/api/v1/chats/")`."""
        marker = f'"{method} {path_prefix}' if method else f" {path_prefix}"
        return [
            line for line in self.log_text().splitlines() if marker in line and "HTTP/1" in line
        ]


@dataclass(repr=False)
class HAProxy(Service):
    """HAProxy running `deploy/haproxy.cfg` unedited, pointed at the replicas by its environment."""

    port: int = 0
    stats_port: int = 0
    servers: int = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        self._launch([binary("haproxy") or "haproxy", "-db", "-f", str(HAPROXY_CONFIG)])
        self.wait_all_up()

    def statuses(self) -> dict[str, str]:
        """`{"kaiwa1": "UP", "kaiwa2": "DOWN", ...}` from the stats page."""
        try:
            csv = httpx.get(f"http://{HOST}:{self.stats_port}/;csv", timeout=2.0, trust_env=False)
        except httpx.TransportError:
            return {}
        lines = csv.text.splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        header = lines[0][2:].split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {
            row["svname"]: row["status"]
            for row in rows
            if row.get("pxname") == "kaiwa_replicas"
            and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def wait_status(self, server: str, status: str, *, timeout: float = 10.0) -> None:
        """Wait until `server` (kaiwa1, kaiwa2, ...) has `status` (UP, DOWN...) in the stats."""
        wait_until(
            lambda: self.statuses().get(server, "").split(" ")[0] == status,
            timeout=timeout,
            what=lambda: f"HAProxy sees {server} {status} (now {self.statuses()})",
        )

    def wait_all_up(self, *, timeout: float = 15.0) -> None:
        def all_up() -> bool:
            assert self.running, f"HAProxy exited:\n{self.log_text()}"
            return list(self.statuses().values()) == ["UP"] * self.servers

        wait_until(
            all_up,
            timeout=timeout,
            what=lambda: f"HAProxy sees every replica UP (now {self.statuses()})",
        )


def haproxy_env(port: int, stats_port: int, replicas: Sequence[Replica]) -> dict[str, str]:
    env = {
        "KAIWA_LB_BIND": f"{HOST}:{port}",
        "KAIWA_LB_STATS_BIND": f"{HOST}:{stats_port}",
        "KAIWA_LB_CHECK_INTERVAL": LB_CHECK_INTERVAL,
    }
    for replica in replicas:
        env[f"KAIWA_REPLICA_{replica.index}"] = replica.address
    return env


@dataclass(repr=False)
class Nginx(Service):
    """nginx serving `deploy/nginx.conf` (its `upstream` and `listen` set to the rig's ports),
    in one process (`master_process off`) so that it stops by its pid alone."""

    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def render(self, replicas: Sequence[Replica]) -> Path:
        """Write the main configuration (around a copy of deploy/nginx.conf); its path."""
        text = NGINX_CONFIG.read_text(encoding="utf-8")
        servers = re.findall(r"^\s*server 127\.0\.0\.1:\d+ .*;$", text, flags=re.MULTILINE)
        assert len(servers) == len(replicas), (servers, replicas)
        for line, replica in zip(servers, replicas, strict=True):
            text = text.replace(line, re.sub(r"127\.0\.0\.1:\d+", replica.address, line), 1)
        listen = re.compile(r"^(\s*)listen \d+;$", flags=re.MULTILINE)
        text, listens = listen.subn(rf"\1listen {HOST}:{self.port};", text)
        assert listens == 1, "deploy/nginx.conf should have one `listen <port>;`"
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "kaiwa.conf").write_text(text, encoding="utf-8")
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "\n".join(
            f"  {kind}_temp_path {self.root / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        main = self.root / "main.conf"
        main.write_text(
            f"{user}master_process off;\ndaemon off;\npid {self.root / 'nginx.pid'};\n"
            f"error_log stderr info;\nevents {{}}\nhttp {{\n  access_log /dev/stdout;\n{temp}\n"
            f"  include {self.root / 'kaiwa.conf'};\n}}\n",
            encoding="utf-8",
        )
        return main

    def check(self, replicas: Sequence[Replica]) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on the rendered configuration."""
        main = self.render(replicas)
        return subprocess.run(
            [binary("nginx") or "nginx", "-t", "-p", str(self.root), "-c", str(main)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def start(self, replicas: Sequence[Replica]) -> None:
        main = self.render(replicas)
        self._launch([binary("nginx") or "nginx", "-p", str(self.root), "-c", str(main)])

        def ready() -> bool:
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{self.base_url}/readyz", timeout=1.0, trust_env=False).is_success
            return False

        wait_until(
            ready, timeout=STARTUP_TIMEOUT, what=lambda: f"nginx answers:\n{self.log_text()}"
        )


# -- PostgreSQL -----------------------------------------------------------------------------

ADMIN_DSNS = (
    "postgresql://postgres@127.0.0.1:5432/postgres",
    "postgresql://postgres@127.0.0.1:5432/test",
)


def _run(coroutine: Any) -> Any:
    """Run a coroutine on a private loop in a worker thread, away from any test's own loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _admin(dsn: str, statement: str | None = None) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        if statement is not None:
            await connection.execute(statement, timeout=30)
    finally:
        await connection.close(timeout=10)


def postgres_admin_dsn() -> str:
    """A DSN that reaches a maintenance database (`KAIWA_TEST_POSTGRES` overrides); raises
    ConnectionError naming what was tried when none answers."""
    import asyncpg

    override = os.environ.get("KAIWA_TEST_POSTGRES")
    failures = []
    for dsn in (override,) if override else ADMIN_DSNS:
        try:
            _run(_admin(dsn))
            return dsn
        except (OSError, asyncpg.PostgresError) as exc:
            failures.append(f"{dsn}: {exc!r}")
    raise ConnectionError("; ".join(failures))


@contextlib.contextmanager
def postgres_database(admin_dsn: str, prefix: str = "kaiwa_scale") -> Iterator[str]:
    """A new, empty database, dropped afterwards (with FORCE); yields its SQLAlchemy URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _run(_admin(admin_dsn, f'CREATE DATABASE "{name}"'))
    server = admin_dsn.removeprefix("postgresql://").rsplit("/", 1)[0]
    try:
        yield f"postgresql+asyncpg://{server}/{name}"
    finally:
        _run(_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- agents ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """A `scripted` model's answer and the text it streams."""

    script: dict[str, Any]
    text: str
    pieces: int


def slow_script(pieces: int, delay: float, *, word: str = "文") -> Script:
    """`pieces` deltas (`第1文。`, `第2文。`...) each followed by `delay` seconds of silence."""
    parts = [f"第{n}{word}。" for n in range(1, pieces + 1)]
    items = [item for part in parts for item in ({"text": part}, {"delay": delay})]
    return Script({"answer": items, "title": "スケール"}, "".join(parts), pieces)


# -- the cluster ----------------------------------------------------------------------------


@dataclass(repr=False)
class Cluster:
    root: Path
    database_url: str
    redis: RedisServer
    replicas: list[Replica]
    lb: HAProxy
    api_key: str = ""
    agent_id: str = ""
    workspace_id: str = ""
    _http: httpx.Client = field(
        default_factory=lambda: httpx.Client(timeout=HTTP_TIMEOUT, trust_env=False), repr=False
    )

    def __repr__(self) -> str:
        return f"<cluster {self.replicas} {self.redis} {self.lb}>"

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key}

    def any_replica(self) -> Replica:
        """The first replica that runs and is not suspended."""
        for replica in self.replicas:
            if replica.running and not replica.suspended:
                return replica
        raise AssertionError("no replica is running")

    def api(
        self, method: str, path: str, *, via: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """A request to `via` (a base URL; by default a running replica) with the cluster's key."""
        base = via or self.any_replica().base_url
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self._http.request(method, f"{base}{path}", headers=headers, **kwargs)

    def ok(self, method: str, path: str, *, via: str | None = None, **kwargs: Any) -> Any:
        """The envelope's `data`, after checking the call succeeded."""
        response = self.api(method, path, via=via, **kwargs)
        assert response.status_code == 200, (response.status_code, response.text)
        body = response.json()
        assert body["error_code"] == 0, body
        return body["data"]

    def create_agent(self, name: str, script: Mapping[str, Any]) -> str:
        """A published `scripted` agent answering with `script`; its id."""
        meta = {"model_settings": {"script": dict(script)}}
        agent = self.ok(
            "POST", "/api/v1/agents", json={"name": name, "llm_model": "scripted/x", "meta": meta}
        )
        self.ok("POST", f"/api/v1/agents/{agent['id']}/publish")
        return str(agent["id"])

    def create_chat(self, agent_id: str, name: str = "scale") -> int:
        """A chat renamed by hand, so its turns generate no title: every answer has exactly
        `response.created`, its deltas and its ending."""
        chat_id = int(
            self.ok("POST", "/api/v1/chats", json={"name": name, "agent_id": agent_id})["id"]
        )
        self.ok("PUT", f"/api/v1/chats/{chat_id}", json={"name": name})
        return chat_id

    def create_chats(self, agent_id: str, count: int) -> list[int]:
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda n: self.create_chat(agent_id, f"scale {n}"), range(count)))

    def messages(self, chat_id: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.ok(
            "GET", f"/api/v1/chats/{chat_id}/messages", params={"limit": 1000}
        )
        return rows

    def response(self, chat_id: int, response_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.ok("GET", f"/api/v1/chats/{chat_id}/responses/{response_id}")
        return data

    def wait_ended(
        self, chat_id: int, response_id: str, *, timeout: float = 15.0
    ) -> dict[str, Any]:
        """Poll the response's status until it is no longer `in_progress` (bounded)."""
        return wait_until(
            lambda: (
                (status := self.response(chat_id, response_id))["status"] != "in_progress"
                and status
            ),
            timeout=timeout,
            what=f"response {response_id} ends",
        )

    def owner_of(self, chat_id: int, *, timeout: float = 5.0) -> Replica:
        """The replica whose access log shows the last message sent to `chat_id`."""
        marker = f'"POST /api/v1/chats/{chat_id}/messages '

        def owners() -> list[Replica]:
            return [r for r in self.replicas if marker in r.log_text(since_start=True)]

        found = wait_until(owners, timeout=timeout, what=f"a replica logs a message to {chat_id}")
        assert len(found) == 1, [r.name for r in found]
        return found[0]

    def heal(self) -> None:
        """Bring everything back as a test expects to find it: Redis up and not paused, every
        replica running, and HAProxy seeing them all UP."""
        if self.redis.running:
            self.redis.unpause()
        else:
            self.redis.start()
        down = []
        for replica in self.replicas:
            if replica.suspended:
                replica.send_signal(signal.SIGCONT)
            if not replica.running:
                replica.launch()
                down.append(replica)
        for replica in down:
            replica.wait_ready()
        self.lb.wait_all_up()

    def stop(self) -> None:
        self._http.close()
        with ThreadPoolExecutor(max_workers=len(self.replicas)) as pool:
            list(pool.map(lambda replica: replica.stop(), self.replicas))
        self.lb.stop()
        self.redis.stop()


@contextlib.contextmanager
def start_cluster(
    root: Path,
    *,
    admin_dsn: str,
    replicas: int = 3,
    env: Mapping[str, str] | None = None,
) -> Iterator[Cluster]:
    """Redis, a fresh database, `replicas` replicas and HAProxy; everything stopped (and the
    database dropped) on exit."""
    with postgres_database(admin_dsn) as database_url:
        redis_server = RedisServer("redis", root / "redis", dict(os.environ), port=free_port())
        redis_server.start()
        base_env = _replica_base_env()
        base_env.update(REPLICA_ENV)
        base_env.update(
            {"KAIWA_DATABASE_URL": database_url, "KAIWA_REDIS_URL": redis_server.url, **(env or {})}
        )
        members = []
        for index in range(1, replicas + 1):
            replica_root = root / f"replica{index}"
            replica_env = dict(base_env)
            replica_env["KAIWA_DATA_DIR"] = str(replica_root / "data")
            replica_env["KAIWA_CONFIG"] = str(replica_root / "kaiwa.toml")
            members.append(
                Replica(f"replica{index}", replica_root, replica_env, port=free_port(), index=index)
            )
        lb_port, stats_port = free_port(), free_port()
        lb = HAProxy(
            "haproxy",
            root / "haproxy",
            dict(os.environ),
            port=lb_port,
            stats_port=stats_port,
            servers=replicas,
        )
        cluster = Cluster(root, database_url, redis_server, members, lb)
        try:
            credentials = _init(members[0])
            cluster.api_key = credentials["api_key"]
            cluster.agent_id = credentials["agent_id"]
            cluster.workspace_id = credentials["workspace_id"]
            for replica in members:
                replica.launch()
            for replica in members:
                if not replica.wait_ready(fail=False):
                    replica.stop()
                    replica.start(may_move=True)
            lb.env.update(haproxy_env(lb_port, stats_port, members))
            lb.start()
            yield cluster
        finally:
            cluster.stop()


def _replica_base_env() -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KAIWA_", "OPENAI_", "ANTHROPIC_")) and "proxy" not in name.lower()
    }
    env.update({"PYTHONUNBUFFERED": "1", "NO_PROXY": "*"})
    return env


def _init(replica: Replica) -> dict[str, str]:
    """`kaiwa init --json` with the replicas' settings: migrates, makes a key and a demo agent."""
    replica.root.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "kaiwa.cli", "init", "--json"],
        cwd=replica.root,
        env=replica.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kaiwa init failed:\n{result.stdout}\n{result.stderr}"
    values: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    return values


def binary(name: str) -> str | None:
    """The path of a program, also in the sbin directories a non-root PATH may leave out."""
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/local/sbin", "/usr/sbin"])
    return shutil.which(name, path=path)


def missing_binaries(*names: str) -> list[str]:
    return [name for name in names if binary(name) is None]
