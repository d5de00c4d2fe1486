"""Real Redis servers on loopback, and replicas of `RedisEventLog` on them, for the bus tests.

A server is a `redis-server` child process without persistence, stopped by its own pid. Each
`Replicas` uses a key prefix of its own, so tests never see each other's logs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.redis_server import RedisServer, free_port

from kaiwa.bus import RedisEventLog, RedisSubscriber, connect

__all__ = ["RedisServer", "Replicas", "free_port", "until"]


@dataclass
class Replicas:
    """Replicas of a `RedisEventLog` on one Redis: each its own client and subscriber."""

    url: str
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}:")
    made: list[tuple[RedisEventLog, RedisSubscriber, object]] = field(default_factory=list)

    async def new(self, **settings: float) -> RedisEventLog:
        redis = connect(self.url, socket_timeout=2.0, connect_timeout=0.5)
        subscriber = RedisSubscriber(redis, backoff_max=0.2, start_timeout=2.0)
        await subscriber.start()
        log = RedisEventLog(redis, subscriber, prefix=self.prefix, **settings)  # type: ignore[arg-type]
        self.made.append((log, subscriber, redis))
        return log

    def subscriber(self, log: RedisEventLog) -> RedisSubscriber:
        return next(sub for made, sub, _ in self.made if made is log)

    async def close(self) -> None:
        for log, subscriber, redis in reversed(self.made):
            await log.close()
            await subscriber.aclose()
            await redis.aclose()  # type: ignore[attr-defined]
        self.made.clear()


async def until(condition: Callable[[], bool], *, within: float = 3.0) -> None:
    """Wait until `condition()` holds, looking every 10 ms; fail after `within` seconds."""
    for _ in range(int(within / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still false after {within} s")
