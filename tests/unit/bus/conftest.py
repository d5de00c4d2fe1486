"""Fixtures of the bus tests: one `redis-server` for the session; one of its own for a test
that kills or restarts Redis; `replicas` of a `RedisEventLog`, closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from tests.unit.bus.redis_support import RedisServer, Replicas


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server this test alone uses, free to kill and restart."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[Replicas]:
    made = Replicas(redis_server.url)
    yield made
    await made.close()
