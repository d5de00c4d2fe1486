"""`/readyz` against real dependencies: it turns 503 when PostgreSQL or Redis goes away, while
`/healthz` (liveness) stays 200, and it is ready again once they are back.

PostgreSQL is reached through a loopback TCP proxy that the test closes (every connection, the
pool's and new ones, is refused), then opens again on the same port. Redis is a private
`redis-server` that the test kills, then starts again on its port. During a shutdown `/readyz`
answers 503 as well: `test_e2e_shutdown.py` and `tests/api/test_api_readiness.py` cover it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.e2e.conftest import fresh_postgres_database
from tests.e2e.tcp_proxy import CuttingProxy
from tests.redis_server import RedisServer

POSTGRES_PORT = 5432
NEVER = 1 << 62
"""A proxy that never cuts: the test closes it instead."""
WITHIN = 10.0
"""Seconds a readiness change may take to show (checks time out after 2 s)."""


def get(server: Any, path: str, **kwargs: Any) -> httpx.Response:
    """A request on a connection of its own: a kept-alive one may be closed by the server as
    it is reused, after a pause as long as closing the proxy can take."""
    return httpx.get(f"{server.base_url}{path}", timeout=WITHIN, trust_env=False, **kwargs)


def wait_status(server: Any, status: int, *, within: float = WITHIN) -> dict[str, Any]:
    """The body of `/readyz` once it answers `status` (bounded)."""
    deadline = time.monotonic() + within
    while True:
        response = get(server, "/readyz")
        if response.status_code == status:
            body: dict[str, Any] = response.json()
            return body
        assert time.monotonic() < deadline, (response.status_code, response.text)
        time.sleep(0.1)


@pytest.fixture
def postgres_behind_a_proxy() -> Iterator[tuple[str, CuttingProxy]]:
    with fresh_postgres_database() as url:
        proxy = CuttingProxy(POSTGRES_PORT, cut_after=NEVER).__enter__()
        try:
            yield url.replace(f":{POSTGRES_PORT}/", f":{proxy.port}/"), proxy
        finally:
            proxy.close()


def test_readyz_fails_while_postgresql_is_unreachable_and_recovers(
    kaiwa_launcher: Any, postgres_behind_a_proxy: tuple[str, CuttingProxy]
) -> None:
    url, proxy = postgres_behind_a_proxy
    server = kaiwa_launcher.start("readyz-postgres", env={"KAIWA_DATABASE_URL": url})
    again: CuttingProxy | None = None
    try:
        assert wait_status(server, 200)["data"] == {"status": "ready"}
        port = proxy.port
        proxy.close()
        started = time.monotonic()
        down = wait_status(server, 503)
        assert time.monotonic() - started < WITHIN
        assert down["error_code"] == 10005
        assert down["message"] == "The database is not reachable"
        assert get(server, "/healthz").status_code == 200

        again = CuttingProxy(POSTGRES_PORT, cut_after=NEVER, port=port).__enter__()
        assert wait_status(server, 200)["data"] == {"status": "ready"}
        chats = get(server, "/api/v1/chats", headers={"x-api-key": server.api_key})
        assert chats.status_code == 200, chats.text
    finally:
        server.stop()
        if again is not None:
            again.close()


def test_readyz_fails_while_redis_is_stopped_and_recovers(kaiwa_launcher: Any) -> None:
    redis = RedisServer()
    redis.start()
    server = None
    try:
        server = kaiwa_launcher.start(
            "readyz-redis", env={"KAIWA_REDIS_URL": redis.url, "KAIWA_SHUTDOWN_DELAY": "0"}
        )
        assert wait_status(server, 200)["data"] == {"status": "ready"}
        redis.stop()
        down = wait_status(server, 503)
        assert down["error_code"] == 10005
        assert down["message"] == "Redis is not reachable"
        assert get(server, "/healthz").status_code == 200

        redis.start()
        assert wait_status(server, 200)["data"] == {"status": "ready"}
    finally:
        if server is not None:
            server.stop()
        redis.stop()
