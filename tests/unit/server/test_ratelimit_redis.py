"""The per-key limiter in Redis: two limiters on one Redis play two replicas sharing limits.

Each module run starts its own `redis-server` on a free loopback port (no persistence), stopped
by its pid at the end.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from tests.redis_server import RedisServer, free_port

from kaiwa.config import Settings
from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.server.ratelimit import create_limiter
from kaiwa.server.ratelimit_redis import RedisRateLimiter

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def replicas(redis: Redis) -> AsyncIterator[list[RedisRateLimiter]]:
    """Limiters made with `replicas_of` are closed at the end of the test."""
    made: list[RedisRateLimiter] = []
    yield made
    for limiter in made:
        await limiter.aclose()


def two(
    redis: Redis, made: list[RedisRateLimiter], **limits: float
) -> tuple[RedisRateLimiter, RedisRateLimiter]:
    per_minute = int(limits.pop("per_minute", 0))
    concurrent = int(limits.pop("concurrent", 0))
    first, second = (
        RedisRateLimiter(redis, per_minute=per_minute, concurrent=concurrent, **limits)
        for _ in range(2)
    )
    made += [first, second]
    return first, second


async def test_two_replicas_together_allow_exactly_the_minute_allowance(
    redis: Redis, replicas: list[RedisRateLimiter]
) -> None:
    a, b = two(redis, replicas, per_minute=10)
    for index in range(10):
        await (a if index % 2 else b).check_request("k")
    for limiter in (a, b):
        with pytest.raises(ApiError) as refused:
            await limiter.check_request("k")
        assert refused.value.code == ErrorCode.RATE_LIMITED
        assert refused.value.status == 429
        assert refused.value.headers["Retry-After"] == "6"  # one request per 6 s
        assert "10 requests per minute" in refused.value.message
    await a.check_request("other")  # another key has its own allowance
    # The bucket is forgotten once it would be full again.
    assert 0 < await redis.ttl("kaiwa:ratelimit:k:requests") <= 60


async def test_the_shared_bucket_refills_evenly(
    redis: Redis, replicas: list[RedisRateLimiter]
) -> None:
    a, b = two(redis, replicas, per_minute=60)
    for _ in range(60):
        await a.check_request("k")
    with pytest.raises(ApiError):
        await b.check_request("k")
    await asyncio.sleep(1.1)  # one more request per second comes back, for either replica
    await b.check_request("k")
    with pytest.raises(ApiError):
        await a.check_request("k")


async def test_the_answer_cap_is_shared_and_a_released_slot_serves_the_other_replica(
    redis: Redis, replicas: list[RedisRateLimiter]
) -> None:
    a, b = two(redis, replicas, concurrent=2)
    first = await a.acquire_stream("k")
    await b.acquire_stream("k")
    for limiter in (a, b):
        with pytest.raises(ApiError) as refused:
            await limiter.acquire_stream("k")
        assert refused.value.headers["Retry-After"] == "1"
        assert "2 answers in flight" in refused.value.message
    assert await a.in_flight("k") == await b.in_flight("k") == 2
    await first.release()
    await first.release()  # a second release must not free someone else's slot
    assert await b.in_flight("k") == 1
    await b.acquire_stream("k")
    with pytest.raises(ApiError):
        await a.acquire_stream("k")
    await b.acquire_stream("other")  # another key has its own cap
    assert 0 < await redis.pttl("kaiwa:ratelimit:k:answers") <= 30_000


async def test_held_slots_are_renewed_past_their_lease(
    redis: Redis, replicas: list[RedisRateLimiter]
) -> None:
    a, b = two(redis, replicas, concurrent=1, lease=0.6)
    await a.acquire_stream("k")
    await asyncio.sleep(1.5)  # 2.5 leases: renewed every 0.2 s
    with pytest.raises(ApiError):
        await b.acquire_stream("k")
    await a.aclose()  # a replica that stops gives its slots back at once
    await b.acquire_stream("k")


# A replica in a process of its own, killed with SIGKILL: nothing releases its slots.
_DEAD_REPLICA = """
import asyncio, sys
from redis.asyncio import Redis
from kaiwa.server.ratelimit_redis import RedisRateLimiter

async def main():
    limiter = RedisRateLimiter(Redis.from_url(sys.argv[1]), per_minute=0, concurrent=2, lease=1.0)
    await limiter.acquire_stream("k")
    await limiter.acquire_stream("k")
    print("held", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_the_slots_of_a_replica_that_died_lapse_with_their_lease(
    redis_url: str, redis: Redis, replicas: list[RedisRateLimiter]
) -> None:
    survivor, _ = two(redis, replicas, concurrent=2)
    dead = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _DEAD_REPLICA,
        redis_url,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert dead.stdout is not None
        assert await asyncio.wait_for(dead.stdout.readline(), timeout=20) == b"held\n"
        await asyncio.sleep(1.2)  # its slots outlive a lease while it renews them
        with pytest.raises(ApiError):
            await survivor.acquire_stream("k")
        dead.kill()
        killed = time.monotonic()
    finally:
        if dead.returncode is None:
            dead.kill()
        await asyncio.wait_for(dead.wait(), timeout=10)
    while await survivor.in_flight("k"):
        assert time.monotonic() - killed < 3.0, "the dead replica's slots never lapsed"
        await asyncio.sleep(0.05)
    await survivor.acquire_stream("k")
    await survivor.acquire_stream("k")


async def test_zero_turns_each_limit_off_without_asking_redis() -> None:
    unreachable = Redis.from_url(f"redis://{HOST}:{free_port()}/0")
    limiter = RedisRateLimiter(unreachable, per_minute=0, concurrent=0)
    for _ in range(100):
        await limiter.check_request("k")
        await limiter.acquire_stream("k")
    await limiter.aclose()
    await unreachable.aclose()


async def test_an_unreachable_redis_refuses_with_503() -> None:
    unreachable = Redis.from_url(f"redis://{HOST}:{free_port()}/0")
    limiter = RedisRateLimiter(unreachable, per_minute=10, concurrent=1, timeout=1.0)
    started = time.monotonic()
    for call in (limiter.check_request, limiter.acquire_stream):
        with pytest.raises(ApiError) as refused:
            await call("k")
        assert refused.value.code == ErrorCode.SERVER_ERROR
        assert refused.value.status == 503
        assert "Redis" in refused.value.message
    assert time.monotonic() - started < 3.0
    await limiter.aclose()
    await unreachable.aclose()


async def test_a_redis_that_never_answers_is_a_503_within_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog does), never answers
        silent.bind((HOST, 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        client = Redis.from_url(f"redis://{HOST}:{port}/0")
        limiter = RedisRateLimiter(client, per_minute=10, concurrent=1, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(ApiError) as refused:
            await limiter.check_request("k")
        assert refused.value.status == 503
        assert time.monotonic() - started < 2.0
        await limiter.aclose()
        await client.aclose()


async def test_with_redis_the_counts_live_in_redis(redis: Redis) -> None:
    settings = Settings(rate_limit_per_minute=1, rate_limit_concurrent=1)
    first, second = create_limiter(settings, redis), create_limiter(settings, redis)
    assert isinstance(first, RedisRateLimiter)
    await first.check_request(key := uuid.uuid4().hex)
    with pytest.raises(ApiError):
        await second.check_request(key)
