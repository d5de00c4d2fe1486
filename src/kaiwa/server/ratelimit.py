"""[ext] Per-key limits: requests per minute, and answers in flight at once.

Requests are counted with a token bucket (a burst of up to a minute's allowance, refilled
evenly). Answers in flight are a counter per key, held from the start of a turn until its reply
ends (the stream's `[DONE]`, or the JSON answer). Both answer 429/10007 with `Retry-After`.
A limit of 0 turns that limit off. The counts live in this process; with several replicas each
enforces its own share.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from kaiwa.protocol import ApiError, ErrorCode

_PRUNE_EVERY = 1024
"""Forget idle keys' buckets every this many requests, so memory stays bounded."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class StreamSlot:
    """One answer in flight for a key; release it exactly once."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


class RateLimiter:
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

    def check_request(self, key_id: str) -> None:
        """Count one request for `key_id`, or raise 429 when its bucket is empty."""
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
            wait = math.ceil((1.0 - bucket.tokens) / rate)
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"Rate limit: at most {self._per_minute} requests per minute for this API key",
                headers={"Retry-After": str(wait)},
            )
        bucket.tokens -= 1.0
        self._seen += 1
        if self._seen % _PRUNE_EVERY == 0:
            self._prune(now, rate)

    def acquire_stream(self, key_id: str) -> StreamSlot:
        """Hold one answer in flight for `key_id`, or raise 429 when it has too many."""
        if self._concurrent <= 0:
            return StreamSlot(lambda: None)
        held = self._in_flight.get(key_id, 0)
        if held >= self._concurrent:
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"Concurrency limit: at most {self._concurrent} answers in flight for this API key",
                headers={"Retry-After": "1"},
            )
        self._in_flight[key_id] = held + 1

        def release() -> None:
            left = self._in_flight.get(key_id, 1) - 1
            if left > 0:
                self._in_flight[key_id] = left
            else:
                self._in_flight.pop(key_id, None)

        return StreamSlot(release)

    def in_flight(self, key_id: str) -> int:
        return self._in_flight.get(key_id, 0)

    def _prune(self, now: float, rate: float) -> None:
        full_after = self._per_minute / rate
        stale = [k for k, b in self._buckets.items() if now - b.updated >= full_after]
        for key_id in stale:
            del self._buckets[key_id]


async def holding(
    slot: StreamSlot, body: AsyncGenerator[bytes, None]
) -> AsyncGenerator[bytes, None]:
    """`body`, releasing `slot` when it ends or the client goes away (closing `body` then)."""
    try:
        async for chunk in body:
            yield chunk
    finally:
        slot.release()
        await body.aclose()
