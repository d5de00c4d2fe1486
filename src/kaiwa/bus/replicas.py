"""Replicas: every server process has an id and, with Redis, a heartbeat that lapses within
seconds of its death.

    replicas = RedisReplicas(redis, new_replica_id(), ttl=5.0)
    await replicas.beat()                  # every second or so, for as long as it runs
    await replicas.alive({"a", "b"})       # {"a"}: b's heartbeat lapsed
    await replicas.leave()                 # at a clean shutdown

Without Redis kaiwa is one process (a lock on its database keeps a second one out), so
`SoloReplicas` knows that every owner but itself is dead.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Collection
from typing import TYPE_CHECKING, Protocol

from kaiwa.bus.base import BusUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisReplicas", "Replicas", "SoloReplicas", "new_replica_id"]


def new_replica_id() -> str:
    """`<host>-<pid>-<random>`: readable in logs, unique across restarts (at most 64 chars)."""
    host = socket.gethostname()[:40] or "kaiwa"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


class Replicas(Protocol):
    @property
    def id(self) -> str:
        """This replica's id: the owner recorded on every response it produces."""
        ...

    async def beat(self) -> None:
        """Tell the others this replica is alive, for the next `ttl` seconds."""
        ...

    async def alive(self, ids: Collection[str]) -> set[str]:
        """Which of `ids` have a live heartbeat. Raises `BusUnavailable` when it cannot tell."""
        ...

    async def leave(self) -> None:
        """Drop this replica's heartbeat (it has nothing running any more)."""
        ...


class SoloReplicas:
    """The only process on its database: nobody else is alive."""

    def __init__(self, replica_id: str) -> None:
        self._id = replica_id

    @property
    def id(self) -> str:
        return self._id

    async def beat(self) -> None:
        return None

    async def alive(self, ids: Collection[str]) -> set[str]:
        return {self._id} if self._id in ids else set()

    async def leave(self) -> None:
        return None


class RedisReplicas:
    """A key per replica, `kaiwa:replica:<id>`, set with a TTL by each heartbeat."""

    def __init__(
        self, redis: Redis, replica_id: str, *, ttl: float, prefix: str = "kaiwa:"
    ) -> None:
        self._redis = redis
        self._id = replica_id
        self._ttl_ms = max(1, int(ttl * 1000))
        self._prefix = f"{prefix}replica:"

    @property
    def id(self) -> str:
        return self._id

    async def beat(self) -> None:
        try:
            await self._redis.set(self._prefix + self._id, b"1", px=self._ttl_ms)
        except Exception as exc:
            raise BusUnavailable(f"Redis is unavailable: {exc}") from exc

    async def alive(self, ids: Collection[str]) -> set[str]:
        ordered = list(ids)
        if not ordered:
            return set()
        try:
            found = await self._redis.mget([self._prefix + id_ for id_ in ordered])
        except Exception as exc:
            raise BusUnavailable(f"Redis is unavailable: {exc}") from exc
        return {id_ for id_, value in zip(ordered, found, strict=True) if value is not None}

    async def leave(self) -> None:
        try:
            await self._redis.delete(self._prefix + self._id)
        except Exception as exc:
            raise BusUnavailable(f"Redis is unavailable: {exc}") from exc
