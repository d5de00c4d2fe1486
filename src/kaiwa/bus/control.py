"""A control channel per replica: stops addressed to the answers it produces.

    control = RedisControl(redis, subscriber, replica_id)
    control.listen(lambda response_id, reason: ...)      # on the owner
    await control.send(owner, response_id, "stop")       # anywhere

A message can be lost (pub/sub delivers at most once, and not while a subscriber reconnects):
the sender also flags the response in the database, which the owner reads every few seconds, so
a lost message is only a delay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from kaiwa.bus.base import BusUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from kaiwa.bus.subscriber import RedisSubscriber

__all__ = ["RedisControl"]

logger = logging.getLogger(__name__)


class RedisControl:
    def __init__(
        self, redis: Redis, subscriber: RedisSubscriber, replica_id: str, *, prefix: str = "kaiwa:"
    ) -> None:
        self._redis = redis
        self._subscriber = subscriber
        self._id = replica_id
        self._prefix = f"{prefix}control:"

    def listen(self, handler: Callable[[str, str], None]) -> None:
        """Call `handler(response_id, reason)` for every stop sent to this replica."""

        def receive(message: bytes) -> None:
            response_id, _, reason = message.decode().partition(" ")
            if response_id and reason:
                handler(response_id, reason)
            else:
                logger.warning("malformed control message %r", message[:80])

        self._subscriber.add(self._prefix + self._id, receive)

    async def send(self, replica_id: str, response_id: str, reason: str) -> None:
        try:
            await self._redis.publish(self._prefix + replica_id, f"{response_id} {reason}")
        except Exception as exc:
            raise BusUnavailable(f"Redis is unavailable: {exc}") from exc
