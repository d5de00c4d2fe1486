"""End-to-end fixtures: real `kaiwa serve` processes on loopback, driven over HTTP and the CLI.

A `KaiwaServer` is one server process with its own data directory (SQLite) or its own fresh
PostgreSQL database, started on a free port and stopped with SIGTERM (then SIGKILL) when its
fixture ends. Its stdout and stderr go to `server.log` beside its data directory; when a test
fails, the tail of every running server's log is attached to the report.

Fixtures:

- `kaiwa_server` (session): SQLite, default settings, shared by modules that only chat.
- `kaiwa_pg_server` (session): the same on a PostgreSQL database created for the session and
  dropped after it.
- `kaiwa_launcher` (session): `kaiwa_launcher.start(name, env=..., config=...)` for modules that
  need their own settings (ping interval, providers) or their own state (CLI tests).

Helpers for tests live on `KaiwaServer` (`api`, `ok`, `create_chat`, `create_agent`, `messages`,
`stream`, `cli`) so that test modules import nothing from here.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 60.0
HTTP_TIMEOUT = 10.0
POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
LOG_TAIL_CHARS = 12_000

_RUNNING: list[KaiwaServer] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def kaiwa_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kaiwa.cli", *args]


@dataclass
class KaiwaServer:
    name: str
    root: Path
    """Holds the data directory, `kaiwa.toml` and `server.log`; the working directory too."""
    env: dict[str, str]
    port: int
    process: subprocess.Popen[bytes] | None = None
    api_key: str = ""
    agent_id: str = ""
    workspace_id: str = ""
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"

    # -- process ---------------------------------------------------------------------------

    def start(self, *, command: list[str] | None = None) -> None:
        """Start `kaiwa serve` and wait until it is healthy (bounded).

        `command` defaults to `kaiwa serve --host 127.0.0.1 --port <port>`; a custom one must take
        its address from `KAIWA_HOST` / `KAIWA_PORT` in `env`. A port taken between choosing it and
        binding it is replaced by another one, twice at most.
        """
        for attempt in range(3):
            if attempt:
                self.port = free_port()
                if "KAIWA_PORT" in self.env:
                    self.env["KAIWA_PORT"] = str(self.port)
            argv = command or kaiwa_command("serve", "--host", HOST, "--port", str(self.port))
            if self._launch(argv):
                return
            if "address already in use" not in self.log_text().lower():
                break
        self.stop()
        pytest.fail(
            f"kaiwa server {self.name!r} did not become healthy; its log:\n{self.log_text()}",
            pytrace=False,
        )

    def _launch(self, argv: list[str]) -> bool:
        """Whether the process came up: alive, bound to our port and answering `/healthz`."""
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                argv,
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        if self not in _RUNNING:
            _RUNNING.append(self)
        # Another server may answer on a port we failed to bind: our own log must say we bound it.
        bound = f"Uvicorn running on {self.base_url}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(timeout=1.0, trust_env=False) as probe:
            while time.monotonic() < deadline and self.process.poll() is None:
                if bound in self.log_text():
                    with contextlib.suppress(httpx.TransportError):
                        if probe.get(f"{self.base_url}/healthz").status_code == 200:
                            return True
                time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        process = self.process
        if self in _RUNNING:
            _RUNNING.remove(self)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
            pytest.fail(
                f"kaiwa server {self.name!r} was still running {STOP_TIMEOUT:g} s after SIGTERM "
                f"and was killed; its log:\n{self.log_text()}",
                pytrace=False,
            )

    def init(self) -> dict[str, str]:
        """`kaiwa init --json` against this server's database; remembers key and agent."""
        result = self.cli("init", "--json")
        values: dict[str, str] = json.loads(result.stdout)
        self.api_key = values["api_key"]
        self.agent_id = values["agent_id"]
        self.workspace_id = values["workspace_id"]
        return values

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a `kaiwa` command with this server's settings."""
        result = subprocess.run(
            kaiwa_command(*args),
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"kaiwa {' '.join(args)} exited with {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}",
                pytrace=False,
            )
        return result

    # -- HTTP helpers ----------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            # Idle connections are dropped well before the server's keep-alive timeout (5 s):
            # reusing one the server is closing that instant fails with "Server disconnected".
            self._client = httpx.Client(
                base_url=self.base_url,
                timeout=HTTP_TIMEOUT,
                trust_env=False,
                limits=httpx.Limits(keepalive_expiry=2.0),
            )
        return self._client

    def api(
        self, method: str, path: str, *, key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"x-api-key": self.api_key if key is None else key, **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def ok(self, method: str, path: str, *, key: str | None = None, **kwargs: Any) -> Any:
        """The envelope's `data`, after checking the call succeeded."""
        response = self.api(method, path, key=key, **kwargs)
        assert response.status_code == 200, (response.status_code, response.text)
        body = response.json()
        assert body["error_code"] == 0, body
        return body["data"]

    def create_chat(
        self,
        name: str = "e2e",
        *,
        agent_id: str | None = None,
        external_user_id: str | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "agent_id": agent_id or self.agent_id}
        if external_user_id is not None:
            body["external_user_id"] = external_user_id
        chat: dict[str, Any] = self.ok("POST", "/api/v1/chats", key=key, json=body)
        return chat

    def messages(self, chat_id: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.ok("GET", f"/api/v1/chats/{chat_id}/messages")
        return rows

    def stream(
        self,
        chat_id: int,
        message: str,
        *,
        agent_id: str | None = None,
        key: str | None = None,
        deadline: float = 30.0,
        **extra: Any,
    ) -> Streamed:
        """Send a message with `stream: true` and read the whole SSE body (bounded)."""
        body = {"message": message, "agent_id": agent_id or self.agent_id, "stream": True, **extra}
        headers = {"x-api-key": self.api_key if key is None else key, "accept": "text/event-stream"}
        ends_at = time.monotonic() + deadline
        pieces: list[bytes] = []
        with self.client.stream(
            "POST", f"/api/v1/chats/{chat_id}/messages", json=body, headers=headers
        ) as response:
            for piece in response.iter_raw():
                pieces.append(piece)
                if time.monotonic() > ends_at:
                    pytest.fail(f"the stream was still open after {deadline:g} s: {pieces!r}")
        return Streamed.parse(response.status_code, response.headers, b"".join(pieces))

    def create_agent(self, **fields: Any) -> dict[str, Any]:
        """Create an agent and publish it; returns the published agent."""
        agent = self.ok("POST", "/api/v1/agents", json=fields)
        published: dict[str, Any] = self.ok("POST", f"/api/v1/agents/{agent['id']}/publish")
        return published


@dataclass
class Streamed:
    """A whole streamed reply, read by a strict parser of kaiwa's framing (§3.1)."""

    status: int
    headers: httpx.Headers
    raw: bytes
    events: list[dict[str, Any]]
    done: bool
    pings: int

    @classmethod
    def parse(cls, status: int, headers: httpx.Headers, raw: bytes) -> Streamed:
        events: list[dict[str, Any]] = []
        done = False
        pings = 0
        if status != 200:
            return cls(status, headers, raw, events, done, pings)
        text = raw.decode("utf-8")  # strict: a split code point would fail here
        assert text.endswith("\n\n"), text[-200:]
        for block in text[:-2].split("\n\n"):
            assert not done, f"a frame after [DONE]: {block!r}"
            # Keep-alives are comment lines before a frame's fields: a blank line ends only frames.
            lines = block.split("\n")
            while lines and lines[0] == ": ping":
                pings += 1
                lines.pop(0)
            if lines == ["data: [DONE]"]:
                done = True
                continue
            assert len(lines) == 3, block
            assert lines[0].startswith("id: "), block
            assert lines[1].startswith("event: "), block
            assert lines[2].startswith("data: "), block
            event = json.loads(lines[2][6:])
            assert event["type"] == lines[1][7:], block
            assert event["response_id"] == headers["x-kaiwa-response-id"], block
            assert isinstance(event["chat_id"], int), block
            assert int(lines[0][4:]) == len(events) + 1, block
            events.append(event)
        return cls(status, headers, raw, events, done, pings)

    @property
    def types(self) -> list[str]:
        return [event["type"] for event in self.events]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == type_]


def _hermetic_env(root: Path, extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KAIWA_", "OPENAI_")) and "proxy" not in name.lower()
    }
    env.update(
        {
            "KAIWA_DATA_DIR": str(root / "data"),
            # Never pick up a kaiwa.toml from wherever the tests were started.
            "KAIWA_CONFIG": str(root / "kaiwa.toml"),
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "*",
        }
    )
    env.update(extra)
    return env


class Launcher:
    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory

    def prepare(
        self,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        config: str | None = None,
    ) -> KaiwaServer:
        """A server not yet started: its directory, settings and port."""
        root = self._tmp.mktemp(name)
        if config is not None:
            (root / "kaiwa.toml").write_text(config, encoding="utf-8")
        return KaiwaServer(
            name=name, root=root, env=_hermetic_env(root, env or {}), port=free_port()
        )

    def start(
        self,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        config: str | None = None,
        init: bool = True,
    ) -> KaiwaServer:
        """Start a server (and run `kaiwa init --json` for it unless `init` is false)."""
        server = self.prepare(name, env=env, config=config)
        server.start()
        if init:
            server.init()
        return server


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one server; dropped afterwards."""
    import asyncpg

    name = f"kaiwa_e2e_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=10)
        try:
            await connection.execute(statement, timeout=30)
        finally:
            await connection.close(timeout=10)

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is needed on 127.0.0.1:5432 (user postgres) for the e2e tests: {exc!r}",
            pytrace=False,
        )
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def kaiwa_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    yield Launcher(tmp_path_factory)
    for server in list(_RUNNING):
        server.stop()


@pytest.fixture(scope="session")
def kaiwa_server(kaiwa_launcher: Launcher) -> Iterator[KaiwaServer]:
    server = kaiwa_launcher.start("sqlite")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kaiwa_pg_server(kaiwa_launcher: Launcher) -> Iterator[KaiwaServer]:
    with fresh_postgres_database() as url:
        server = kaiwa_launcher.start("postgres", env={"KAIWA_DATABASE_URL": url})
        try:
            yield server
        finally:
            # The database can only be dropped once the server has let go of it.
            server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def any_server(request: pytest.FixtureRequest) -> KaiwaServer:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    fixture = "kaiwa_server" if request.param == "sqlite" else "kaiwa_pg_server"
    server: KaiwaServer = request.getfixturevalue(fixture)
    return server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for server in _RUNNING:
            text = server.log_text()
            if len(text) > LOG_TAIL_CHARS:
                text = "…\n" + text[-LOG_TAIL_CHARS:]
            report.sections.append((f"kaiwa server log ({server.name}, {server.log_path})", text))
    return report


@atexit.register
def _kill_leftovers() -> None:
    # A last resort when pytest is interrupted before the fixtures' teardown ran.
    for server in list(_RUNNING):
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
