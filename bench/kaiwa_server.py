"""A real `kaiwa serve` for a benchmark: fresh data directory, free loopback port, a key.

with running_kaiwa() as kaiwa:
    httpx.get(f"{kaiwa.base_url}/healthz")
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Kaiwa:
    base_url: str
    api_key: str
    agent_id: str
    """The published demo agent, on the built-in model."""
    pid: int = 0
    """The `kaiwa serve` process (one process: its CPU time is the server's)."""


@contextmanager
def running_kaiwa(
    env: dict[str, str] | None = None, log_path: str | None = None
) -> Iterator[Kaiwa]:
    """`env` adds to the environment (e.g. `KAIWA_CONFIG`); `log_path` keeps the server's output."""
    with tempfile.TemporaryDirectory() as data_dir:
        environ = {**os.environ, "KAIWA_DATA_DIR": data_dir, **(env or {})}
        init = subprocess.run(
            [sys.executable, "-m", "kaiwa.cli", "init", "--json"],
            env=environ,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        boot = json.loads(init.stdout)
        port = _free_port()
        log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        server = subprocess.Popen(
            [sys.executable, "-m", "kaiwa.cli", "serve", "--port", str(port)],
            env=environ,
            stdout=log,
            stderr=log,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_ready(base_url)
            yield Kaiwa(
                base_url=base_url,
                api_key=boot["api_key"],
                agent_id=boot["agent_id"],
                pid=server.pid,
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)
            if log_path:
                log.close()  # type: ignore[union-attr]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(base_url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"kaiwa did not start at {base_url}")
