"""The per-key limiter: a token bucket for requests, a counter for answers in flight."""

from __future__ import annotations

import pytest

from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.server.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_over_the_minute_allowance_are_refused_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=3, concurrent=0, clock=clock)
    for _ in range(3):
        limiter.check_request("k")
    with pytest.raises(ApiError) as refused:
        limiter.check_request("k")
    assert refused.value.code == ErrorCode.RATE_LIMITED
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == "20"  # one request per 20 s
    assert "3 requests per minute" in refused.value.message


def test_the_bucket_refills_evenly_and_keys_are_counted_apart() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, concurrent=0, clock=clock)
    for _ in range(60):
        limiter.check_request("a")
    with pytest.raises(ApiError):
        limiter.check_request("a")
    limiter.check_request("b")  # another key has its own allowance
    clock.now += 1.0  # one more request per second comes back
    limiter.check_request("a")
    with pytest.raises(ApiError):
        limiter.check_request("a")


def test_zero_turns_each_limit_off() -> None:
    limiter = RateLimiter(per_minute=0, concurrent=0, clock=Clock())
    slots = [limiter.acquire_stream("k") for _ in range(500)]
    for _ in range(500):
        limiter.check_request("k")
    assert limiter.in_flight("k") == 0
    assert len(slots) == 500


def test_answers_in_flight_are_capped_and_released_once() -> None:
    limiter = RateLimiter(per_minute=0, concurrent=2, clock=Clock())
    first = limiter.acquire_stream("k")
    second = limiter.acquire_stream("k")
    with pytest.raises(ApiError) as refused:
        limiter.acquire_stream("k")
    assert refused.value.headers["Retry-After"] == "1"
    first.release()
    first.release()  # a second release must not free someone else's slot
    assert limiter.in_flight("k") == 1
    third = limiter.acquire_stream("k")
    assert limiter.in_flight("k") == 2
    second.release()
    third.release()
    assert limiter.in_flight("k") == 0


def test_idle_buckets_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=1000, concurrent=0, clock=clock)
    for index in range(1023):
        limiter.check_request(f"key-{index}")
    clock.now += 120.0  # every bucket is full again: nothing to remember
    limiter.check_request("trigger")  # the 1024th request prunes
    assert len(limiter._buckets) <= 1
