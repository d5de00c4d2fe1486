"""`GET /metrics` of `kaiwa serve --workers 2`: whichever worker answers a scrape, it reports
the totals of both (prometheus_client's multiprocess mode, set up by `kaiwa serve`).

The module starts its own `redis-server` (no persistence) on a free loopback port, stopped by
its pid at the end, and uses a fresh PostgreSQL database (workers need both).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.conftest import fresh_postgres_database
from tests.redis_server import RedisServer

HOST = "127.0.0.1"
SERVE_WORKERS = ["-m", "kaiwa.cli", "serve", "--workers", "2"]
ANSWERS = 6
MESSAGES = "/api/v1/chats/{chat_id}/messages"


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


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _fresh(server: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A request on a connection of its own: the kernel hands it to either worker."""
    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as client:
        return client.request(method, path, **kwargs)


def test_any_worker_scrapes_the_totals_of_both(
    kaiwa_launcher: Any, redis_url: str, postgres_url: str
) -> None:
    server = kaiwa_launcher.prepare(
        "metrics-workers", env={"KAIWA_DATABASE_URL": postgres_url, "KAIWA_REDIS_URL": redis_url}
    )
    server.env.update({"KAIWA_HOST": HOST, "KAIWA_PORT": str(server.port)})
    server.init()
    server.start(command=[sys.executable, *SERVE_WORKERS])
    try:
        deadline = time.monotonic() + 30
        while server.log_text().count("Application startup complete.") < 2:
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.1)
        chat = server.create_chat("metrics")
        headers = {"x-api-key": server.api_key}
        body = {"message": "こんにちは", "agent_id": server.agent_id, "stream": False}
        path = MESSAGES.format(chat_id=chat["id"])
        for _ in range(ANSWERS):
            reply = _fresh(server, "POST", path, json=body, headers=headers)
            assert reply.status_code == 200, reply.text

        model = frozenset({("model", "builtin/extractive")})
        route = frozenset({("route", MESSAGES), ("method", "POST"), ("status", "200")})
        for _ in range(8):
            scrape = _fresh(server, "GET", "/metrics")
            assert scrape.status_code == 200, scrape.text
            samples = _samples(scrape.text)
            assert samples[("kaiwa_responses_started_total", model)] == ANSWERS
            assert samples[("kaiwa_http_requests_total", route)] == ANSWERS
            assert samples[("kaiwa_responses_active", frozenset())] == 0
            assert samples[("kaiwa_batch_items", frozenset({("status", "pending")}))] == 0
    finally:
        server.stop()
