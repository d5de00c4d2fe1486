"""The per-key limiter of one process: a token bucket for requests, a counter for answers."""

from __future__ import annotations

import pytest

from kaiwa.config import Settings
from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.server.ratelimit import MemoryRateLimiter, create_limiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_requests_over_the_minute_allowance_are_refused_with_retry_after() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(per_minute=3, concurrent=0, clock=clock)
    for _ in range(3):
        await limiter.check_request("k")
    with pytest.raises(ApiError) as refused:
        await limiter.check_request("k")
    assert refused.value.code == ErrorCode.RATE_LIMITED
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == "20"  # one request per 20 s
    assert "3 requests per minute" in refused.value.message


async def test_the_bucket_refills_evenly_and_keys_are_counted_apart() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(per_minute=60, concurrent=0, clock=clock)
    for _ in range(60):
        await limiter.check_request("a")
    with pytest.raises(ApiError):
        await limiter.check_request("a")
    await limiter.check_request("b")  # another key has its own allowance
    clock.now += 1.0  # one more request per second comes back
    await limiter.check_request("a")
    with pytest.raises(ApiError):
        await limiter.check_request("a")


async def test_zero_turns_each_limit_off() -> None:
    limiter = MemoryRateLimiter(per_minute=0, concurrent=0, clock=Clock())
    slots = [await limiter.acquire_stream("k") for _ in range(500)]
    for _ in range(500):
        await limiter.check_request("k")
    assert await limiter.in_flight("k") == 0
    assert len(slots) == 500


async def test_answers_in_flight_are_capped_and_released_once() -> None:
    limiter = MemoryRateLimiter(per_minute=0, concurrent=2, clock=Clock())
    first = await limiter.acquire_stream("k")
    second = await limiter.acquire_stream("k")
    with pytest.raises(ApiError) as refused:
        await limiter.acquire_stream("k")
    assert refused.value.headers["Retry-After"] == "1"
    await first.release()
    await first.release()  # a second release must not free someone else's slot
    assert await limiter.in_flight("k") == 1
    third = await limiter.acquire_stream("k")
    assert await limiter.in_flight("k") == 2
    await second.release()
    await third.release()
    assert await limiter.in_flight("k") == 0


async def test_idle_buckets_are_forgotten() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(per_minute=1000, concurrent=0, clock=clock)
    for index in range(1023):
        await limiter.check_request(f"key-{index}")
    clock.now += 120.0  # every bucket is full again: nothing to remember
    await limiter.check_request("trigger")  # the 1024th request prunes
    assert len(limiter._buckets) <= 1


async def test_a_slot_is_given_back_once() -> None:
    limiter = MemoryRateLimiter(per_minute=0, concurrent=1)
    slot = await limiter.acquire_stream("k")
    assert await limiter.in_flight("k") == 1
    await slot.release()
    await slot.release()  # a second release does nothing
    assert await limiter.in_flight("k") == 0
    other = await limiter.acquire_stream("k")
    assert await limiter.in_flight("k") == 1
    await other.release()


def test_without_redis_the_counts_live_in_this_process() -> None:
    settings = Settings(rate_limit_per_minute=5, rate_limit_concurrent=2)
    assert isinstance(create_limiter(settings, None), MemoryRateLimiter)
