"""`kaiwa serve --workers N`: N server processes on one port, on PostgreSQL and Redis.

The module starts its own `redis-server` (no persistence) on a free loopback port, stopped by
its pid at the end; each test that serves has a fresh PostgreSQL database. The workers are the
children of the `kaiwa serve` process (`ps --ppid`) that run `multiprocessing`'s spawn entry
point; each logs its own "Started server process [<pid>]".
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.conftest import fresh_postgres_database
from tests.redis_server import RedisServer

HOST = "127.0.0.1"
SERVE_WORKERS = [sys.executable, "-m", "kaiwa.cli", "serve", "--workers", "2"]
STOP_TIMEOUT = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def workers(kaiwa_launcher: Any, redis_url: str, postgres_url: str) -> Iterator[Any]:
    """`kaiwa serve --workers 2`, healthy, with a key from `kaiwa init`, and its two workers."""
    server = kaiwa_launcher.prepare(
        "workers", env={"KAIWA_DATABASE_URL": postgres_url, "KAIWA_REDIS_URL": redis_url}
    )
    server.env.update({"KAIWA_HOST": HOST, "KAIWA_PORT": str(server.port)})
    server.init()
    server.start(command=SERVE_WORKERS)
    try:
        yield server
    finally:
        server.stop()
        for pid in _children(server):  # none, unless a test failed half-way
            os.kill(pid, signal.SIGKILL)


def _children(server: Any) -> list[int]:
    """The pids of the server's workers (not `multiprocessing`'s resource tracker)."""
    if server.process is None or server.process.poll() is not None:
        return []
    listing = subprocess.run(
        ["ps", "-ww", "--ppid", str(server.process.pid), "-o", "pid=,args="],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [int(line.split()[0]) for line in listing.splitlines() if "spawn_main" in line]


def _both_started(server: Any) -> list[int]:
    """The two workers' pids, once each has logged that its server started (bounded)."""
    deadline = time.monotonic() + 30
    while True:
        pids = _children(server)
        log = server.log_text()
        started = [pid for pid in pids if f"Started server process [{pid}]" in log]
        if len(started) == 2 and log.count("Application startup complete.") >= 2:
            return started
        assert time.monotonic() < deadline, f"workers {pids}, started {started}:\n{log}"
        time.sleep(0.1)


def _gone(pid: int) -> bool:
    """The process has ended and been reaped (by its parent, or by init once orphaned)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _until_gone(pids: list[int], timeout: float = STOP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not all(_gone(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if not _gone(p)]}"
        time.sleep(0.05)


def test_two_workers_answer_on_one_port_and_sigterm_stops_them_all_with_0(workers: Any) -> None:
    pids = _both_started(workers)
    assert len(set(pids)) == 2
    assert workers.process.pid not in pids
    assert workers.api("GET", "/healthz").status_code == 200

    chat = workers.create_chat("workers")
    streamed = workers.stream(chat["id"], "こんにちは")
    assert streamed.status == 200
    assert streamed.done
    assert streamed.types[0] == "response.created"
    assert streamed.types[-1] == "response.output_text.completed"
    assert workers.messages(chat["id"])[-1]["meta"]["status"] == "completed"

    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(timeout=STOP_TIMEOUT) == 0
    _until_gone(pids)
    log = workers.log_text()
    assert all(f"Finished server process [{pid}]" in log for pid in pids), log


def test_a_worker_that_dies_stops_the_others_and_the_server_exits_1(workers: Any) -> None:
    dead, survivor = _both_started(workers)
    os.kill(dead, signal.SIGKILL)
    assert workers.process.wait(timeout=STOP_TIMEOUT) == 1
    _until_gone([survivor])
    log = workers.log_text()
    assert re.search(rf"A worker exited on its own \(\[{dead}\] with status -9\)", log), log
    assert f"Finished server process [{survivor}]" in log  # stopped gracefully


def test_workers_stop_when_their_parent_is_killed(workers: Any) -> None:
    pids = _both_started(workers)
    workers.process.send_signal(signal.SIGKILL)
    workers.process.wait(timeout=10)
    _until_gone(pids)
    log = workers.log_text()
    assert all(f"Finished server process [{pid}]" in log for pid in pids), log


@pytest.mark.parametrize(
    ("redis", "postgres", "refusals"),
    [
        (False, False, ["needs KAIWA_REDIS_URL", "needs PostgreSQL"]),
        (True, False, ["needs PostgreSQL (KAIWA_DATABASE_URL): several processes writing"]),
        (False, True, ["needs KAIWA_REDIS_URL"]),
    ],
)
def test_workers_are_refused_without_redis_or_on_sqlite(
    kaiwa_launcher: Any,
    redis_url: str,
    redis: bool,
    postgres: bool,
    refusals: list[str],
) -> None:
    env = {"KAIWA_REDIS_URL": redis_url} if redis else {}
    if postgres:  # never reached: the refusal comes first
        env["KAIWA_DATABASE_URL"] = "postgresql+asyncpg://postgres@127.0.0.1:5432/unused"
    server = kaiwa_launcher.prepare("workers-refused", env=env)
    result = server.cli("serve", "--port", str(server.port), "--workers", "2", check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(refusals), result.stderr
    for line, refusal in zip(lines, refusals, strict=True):
        assert line.startswith(f"kaiwa: --workers 2 {refusal}"), result.stderr
    assert not (server.root / "data").exists()  # nothing was touched
