"""Connections to Redis: `connect` makes the shared client; `dedicated` a connection of one's own
with its settings; `Pipe` sends many commands on one in a single round trip.

    redis = connect("redis://127.0.0.1:6379/0")       # never hangs; closed by its maker
    pipe = Pipe(redis, timeout=7.0)
    replies = await pipe.send([("GET", "a"), ("EVALSHA", sha, 1, "k", 5)])
    await pipe.aclose()

Deliberate choices:

* `Pipe` is for one task that sends a batch, then the next (the event log's flusher). It skips
  what redis-py's pipeline does per command — encoding each argument in Python, a timer per
  reply, the pool's locks — which cost more than Redis's own work for a small script: here
  hiredis packs the whole batch, one deadline bounds the round trip, and a failure drops the
  connection (a later batch makes a new one). It never retries: its caller does.
* Its connection and the subscriber's speak RESP2: replies and pub/sub messages as plain lists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ResponseError

try:
    from hiredis import pack_command
except ImportError:  # pragma: no cover - hiredis comes with the server extra
    pack_command = None  # type: ignore[assignment]

__all__ = ["Command", "Pipe", "connect", "deadline", "dedicated"]

Command = Sequence[str | bytes | int]


def connect(
    url: str,
    *,
    socket_timeout: float = 5.0,
    connect_timeout: float = 2.0,
    max_connections: int = 64,
) -> Redis:
    """A client for `url` that never hangs.

    A command fails after `socket_timeout` (longer than a 2 s `CLIENT PAUSE` of a failover),
    a connection attempt after `connect_timeout`; a command that fails on a dead connection is
    retried once on a new one. At most `max_connections` connections; a command waits for a
    free one up to `socket_timeout`. Idle connections are checked every 30 s.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=socket_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1),
    )
    return Redis.from_pool(pool)


def deadline(redis: Redis) -> float:
    """Seconds within which a command of `redis`, its retry on a new connection included, has
    either answered or failed: its socket timeout plus its connect timeout."""
    settings = redis.connection_pool.connection_kwargs
    return float(settings.get("socket_timeout") or 5.0) + float(
        settings.get("socket_connect_timeout") or 2.0
    )


def dedicated(redis: Redis, *, socket_timeout: float | None = None) -> AbstractConnection:
    """A connection with `redis`'s settings, outside its pool, that never retries by itself."""
    pool = redis.connection_pool
    settings = {
        **pool.connection_kwargs,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
        "protocol": 2,
        "socket_timeout": socket_timeout,
    }
    connection: AbstractConnection = pool.connection_class(**settings)
    return connection


class Pipe:
    def __init__(self, redis: Redis, *, timeout: float) -> None:
        """`timeout`: the most seconds one `send`, connecting included, may take."""
        self._redis = redis
        self._timeout = timeout
        self._connection: AbstractConnection | None = None

    async def send(self, commands: Sequence[Command]) -> list[Any]:
        """Every command's reply, in order; a command Redis refused gives its `ResponseError`.

        Raises `redis.exceptions.ConnectionError`, `OSError` or `TimeoutError` when the round
        trip fails: some of the commands may have run.
        """
        connection = self._connection
        if connection is None:
            connection = self._connection = dedicated(self._redis)
        try:
            async with asyncio.timeout(self._timeout):
                if not connection.is_connected:
                    await connection.connect()  # type: ignore[no-untyped-call]
                await connection.send_packed_command(_pack(connection, commands), False)
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(await connection.read_response())
                    except ResponseError as refused:
                        replies.append(refused)
                return replies
        except BaseException:
            await connection.disconnect(nowait=True)
            raise

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect(nowait=True)


def _pack(connection: AbstractConnection, commands: Sequence[Command]) -> list[bytes]:
    if pack_command is None:  # pragma: no cover
        return connection.pack_commands(commands)
    pack = cast("Any", pack_command)
    return [pack(tuple(command)) for command in commands]
