"""`open_bus`: the event log, the replicas' heartbeats and the control channel, in this process
or shared through Redis.

    bus = await open_bus(settings.redis_url, retention=3600, max_age=86400,
                         max_bytes=16 << 20, heartbeat_ttl=5.0)
    bus.log, bus.replicas, bus.control      # control is None without Redis
    bus.bell                                # new background jobs, heard by every replica
    await bus.aclose()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kaiwa.bus.base import EventLog
from kaiwa.bus.bell import JobBell, LocalBell
from kaiwa.bus.memory import MemoryEventLog
from kaiwa.bus.replicas import Replicas, SoloReplicas, new_replica_id

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from kaiwa.bus.control import RedisControl
    from kaiwa.bus.subscriber import RedisSubscriber

__all__ = ["Bus", "open_bus"]


@dataclass(slots=True)
class Bus:
    log: EventLog
    replicas: Replicas
    control: RedisControl | None
    """None without Redis: one process, where every running answer is local."""
    bell: JobBell
    redis: Redis | None = None
    subscriber: RedisSubscriber | None = None

    @property
    def shared(self) -> bool:
        return self.redis is not None

    async def aclose(self) -> None:
        await self.log.close()
        if self.subscriber is not None:
            await self.subscriber.aclose()
        if self.redis is not None:
            await self.redis.aclose()


async def open_bus(
    redis_url: str | None,
    *,
    retention: float,
    max_age: float,
    max_bytes: int,
    heartbeat_ttl: float,
) -> Bus:
    replica_id = new_replica_id()
    if not redis_url:
        log = MemoryEventLog(retention=retention, max_age=max_age, max_bytes=max_bytes)
        return Bus(log=log, replicas=SoloReplicas(replica_id), control=None, bell=LocalBell())
    # Imported here: one process never needs redis-py.
    from kaiwa.bus.bell import RedisBell
    from kaiwa.bus.control import RedisControl
    from kaiwa.bus.redis import RedisEventLog, connect
    from kaiwa.bus.replicas import RedisReplicas
    from kaiwa.bus.subscriber import RedisSubscriber

    redis = connect(redis_url)
    subscriber = RedisSubscriber(redis)
    await subscriber.start()
    return Bus(
        log=RedisEventLog(
            redis,
            subscriber,
            retention=retention,
            max_age=max_age,
            max_bytes=max_bytes,
            # Frames wait up to 2 ms longer, so that a flush carries many of them: under load
            # the log alone costs ~1.6-1.8x the in-process one instead of ~2.7-3x
            # (bench/redis_log.py); a whole server, 0.93-1.06x (bench/redis_cost.py).
            linger=0.002,
        ),
        replicas=RedisReplicas(redis, replica_id, ttl=heartbeat_ttl),
        control=RedisControl(redis, subscriber, replica_id),
        bell=RedisBell(redis, subscriber),
        redis=redis,
        subscriber=subscriber,
    )
