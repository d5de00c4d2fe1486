"""The job bell: "there is new work of this kind", rung after a job is stored, so idle workers
start it at once instead of at their next poll.

    bell = LocalBell()                       # one process; or RedisBell(redis, subscriber)
    bell.listen(lambda kind: ...)            # every replica's worker
    await bell.ring("index")                 # after the transaction that queued the job commits

A ring may be lost (pub/sub delivers at most once, and nothing while a subscriber reconnects; a
second process on one SQLite file hears nothing at all): the workers' slow poll is the fallback,
so a lost ring is only a delay. After a reconnect every kind is rung (`"*"`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from kaiwa.bus.subscriber import RedisSubscriber

__all__ = ["ANY_KIND", "JobBell", "LocalBell", "RedisBell"]

logger = logging.getLogger(__name__)

ANY_KIND = "*"
"""Rung when rings may have been missed: look for work of every kind."""


class JobBell(Protocol):
    def listen(self, handler: Callable[[str], None]) -> None:
        """Call `handler(kind)` on every ring, here or (when shared) on any replica."""

    async def ring(self, kind: str) -> None:
        """Never raises: a ring that cannot be sent is left to the poll."""


class LocalBell:
    def __init__(self) -> None:
        self._handlers: list[Callable[[str], None]] = []

    def listen(self, handler: Callable[[str], None]) -> None:
        self._handlers.append(handler)

    async def ring(self, kind: str) -> None:
        for handler in self._handlers:
            handler(kind)


class RedisBell:
    def __init__(
        self, redis: Redis, subscriber: RedisSubscriber, *, prefix: str = "kaiwa:"
    ) -> None:
        self._redis = redis
        self._subscriber = subscriber
        self._channel = f"{prefix}jobs"

    def listen(self, handler: Callable[[str], None]) -> None:
        self._subscriber.add(self._channel, lambda message: handler(message.decode()))
        self._subscriber.on_reconnect(lambda: handler(ANY_KIND))

    async def ring(self, kind: str) -> None:
        try:
            await self._redis.publish(self._channel, kind)
        except Exception as exc:
            logger.warning("could not ring the job bell (%s): workers find it at their poll", exc)
