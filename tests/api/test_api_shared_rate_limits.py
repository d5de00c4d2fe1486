"""[ext] Per-key limits shared through Redis: two apps on one database and one Redis play two
replicas, and a key's limits hold across them; without Redis a request gets a 503 envelope.

Each test starts its own `redis-server` (no persistence) on a free loopback port and stops it
by its pid at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from api_support import Api, error, parse_stream
from tests.redis_server import RedisServer

MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


async def test_two_replicas_together_allow_a_key_its_per_minute_allowance(
    make_api: MakeApi, redis_server: RedisServer
) -> None:
    one = await make_api(rate_limit_per_minute=4, redis_url=redis_server.url)
    two = await make_api(rate_limit_per_minute=4, redis_url=redis_server.url)
    key = one.chat_key  # unused so far: its whole allowance is left
    for replica in (one, two, one, two):
        assert (await replica.get("/api/v1/chats", key=key)).status_code == 200
    for replica in (one, two):
        refused = await replica.get("/api/v1/chats", key=key)
        assert "4 requests per minute" in error(refused, 429, 10007)
        assert refused.headers["retry-after"] == "15"


async def test_an_answer_in_flight_on_one_replica_counts_on_the_other(
    make_api: MakeApi, redis_server: RedisServer
) -> None:
    one = await make_api(rate_limit_concurrent=1, redis_url=redis_server.url)
    two = await make_api(rate_limit_concurrent=1, redis_url=redis_server.url)
    agent_id = await one.scripted_agent([{"text": "slow"}, {"delay": 0.5}, {"text": " answer"}])
    first_chat = await one.create_chat(agent_id)
    second_chat = await one.create_chat(agent_id)
    running = asyncio.create_task(one.send(first_chat["id"], "one", agent_id=agent_id))
    for _ in range(500):
        rows = await one.messages(first_chat["id"])
        if rows and rows[-1]["meta"]["status"] == "in_progress":
            break
        await asyncio.sleep(0.01)

    # The same key on the other replica (each app made keys of its own).
    url = f"/api/v1/chats/{second_chat['id']}/messages"
    body = {"message": "two", "agent_id": agent_id}
    refused = await two.post(url, json=body, key=one.key)
    assert "1 answers in flight" in error(refused, 429, 10007)

    assert parse_stream((await running).content).completed.final_text == "slow answer"
    again = await two.post(url, json={**body, "stream": False}, key=one.key)
    assert again.status_code == 200, again.text


async def test_with_redis_down_a_limited_request_gets_a_503_envelope_at_once(
    make_api: MakeApi, redis_server: RedisServer
) -> None:
    api = await make_api(rate_limit_per_minute=100, redis_url=redis_server.url)
    assert (await api.get("/api/v1/chats")).status_code == 200
    redis_server.stop()
    try:
        started = time.monotonic()
        refused = await api.get("/api/v1/chats")
        assert "Redis" in error(refused, 503, 10005)
        assert time.monotonic() - started < 5.0
    finally:
        redis_server.start()  # on the same port: the app shuts down against a live Redis
