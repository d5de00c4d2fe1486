"""[ext] Per-key limits: requests per minute, and answers in flight at once.

Requests are counted with a token bucket (a burst of up to a minute's allowance, refilled
evenly). Answers in flight are counted per key, each held from the start of a turn until its
reply ends (the stream's `[DONE]`, or the JSON answer). Both answer 429/10007 with `Retry-After`.
A limit of 0 turns that limit off.

`create_limiter` picks where the counts live: in this process (`MemoryRateLimiter`), or with
Redis in Redis (`kaiwa.server.ratelimit_redis.RedisRateLimiter`), where every replica counts
against the same limits::

    limiter = create_limiter(settings, bus.redis)
    await limiter.check_request(key_id)           # or 429
    slot = await limiter.acquire_stream(key_id)   # or 429
    await slot.release()
    await limiter.aclose()
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from kaiwa.protocol import ApiError, ErrorCode

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from kaiwa.config import Settings

__all__ = [
    "MemoryRateLimiter",
    "RateLimited",
    "RateLimiter",
    "StreamSlot",
    "create_limiter",
    "too_many_answers",
    "too_many_requests",
]

_PRUNE_EVERY = 1024
"""Forget idle keys' buckets every this many requests, so memory stays bounded."""


class StreamSlot:
    """One answer in flight for a key; release it once (a second release does nothing)."""

    def __init__(self, release: Callable[[], Awaitable[None]] | None = None) -> None:
        self._release = release

    async def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            await release()


class RateLimiter(Protocol):
    async def check_request(self, key_id: str) -> None:
        """Count one request for `key_id`, or raise 429 when its bucket is empty."""
        ...

    async def acquire_stream(self, key_id: str) -> StreamSlot:
        """Hold one answer in flight for `key_id`, or raise 429 when it has too many."""
        ...

    async def in_flight(self, key_id: str) -> int:
        """Answers in flight for `key_id`, as counted against its limit."""
        ...

    async def aclose(self) -> None:
        """Stop; slots still held are given back."""
        ...


def create_limiter(settings: Settings, redis: Redis | None = None) -> RateLimiter:
    """The limits of `settings`, counted in Redis when given one (shared by every replica)."""
    if redis is None:
        return MemoryRateLimiter(
            per_minute=settings.rate_limit_per_minute, concurrent=settings.rate_limit_concurrent
        )
    # Imported here: one process never needs redis-py.
    from kaiwa.server.ratelimit_redis import RedisRateLimiter

    return RedisRateLimiter(
        redis, per_minute=settings.rate_limit_per_minute, concurrent=settings.rate_limit_concurrent
    )


class RateLimited(ApiError):
    """429/10007, saying which limit refused (for the metrics)."""

    def __init__(
        self, limit: Literal["requests", "answers"], message: str, *, retry_after: int
    ) -> None:
        super().__init__(ErrorCode.RATE_LIMITED, message, headers={"Retry-After": str(retry_after)})
        self.limit: Literal["requests", "answers"] = limit


def too_many_requests(per_minute: int, wait: float) -> RateLimited:
    return RateLimited(
        "requests",
        f"Rate limit: at most {per_minute} requests per minute for this API key",
        retry_after=max(1, math.ceil(wait)),
    )


def too_many_answers(concurrent: int) -> RateLimited:
    return RateLimited(
        "answers",
        f"Concurrency limit: at most {concurrent} answers in flight for this API key",
        retry_after=1,
    )


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class MemoryRateLimiter:
    """The counts of this process: for a server alone (with several, each has its own)."""

    def __init__(
        self,
        *,
        per_minute: int,
        concurrent: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_minute = per_minute
        self._concurrent = concurrent
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._in_flight: dict[str, int] = {}
        self._seen = 0

    async def check_request(self, key_id: str) -> None:
        if self._per_minute <= 0:
            return
        now = self._clock()
        rate = self._per_minute / 60.0
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(tokens=float(self._per_minute), updated=now)
        else:
            bucket.tokens = min(self._per_minute, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if bucket.tokens < 1.0:
            raise too_many_requests(self._per_minute, (1.0 - bucket.tokens) / rate)
        bucket.tokens -= 1.0
        self._seen += 1
        if self._seen % _PRUNE_EVERY == 0:
            self._prune(now, rate)

    async def acquire_stream(self, key_id: str) -> StreamSlot:
        if self._concurrent <= 0:
            return StreamSlot()
        held = self._in_flight.get(key_id, 0)
        if held >= self._concurrent:
            raise too_many_answers(self._concurrent)
        self._in_flight[key_id] = held + 1

        async def release() -> None:
            left = self._in_flight.get(key_id, 1) - 1
            if left > 0:
                self._in_flight[key_id] = left
            else:
                self._in_flight.pop(key_id, None)

        return StreamSlot(release)

    async def in_flight(self, key_id: str) -> int:
        return self._in_flight.get(key_id, 0)

    async def aclose(self) -> None:
        return None

    def _prune(self, now: float, rate: float) -> None:
        full_after = self._per_minute / rate
        stale = [k for k, b in self._buckets.items() if now - b.updated >= full_after]
        for key_id in stale:
            del self._buckets[key_id]
