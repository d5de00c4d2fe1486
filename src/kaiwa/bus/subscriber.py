"""`RedisSubscriber`: one pub/sub connection per replica, shared by everything that listens.

    subscriber = RedisSubscriber(redis)
    subscriber.add("kaiwa:doorbell", on_doorbell)     # handler(message: bytes), any time
    subscriber.on_reconnect(wake_everyone)            # messages may have been lost meanwhile
    await subscriber.start()                          # subscribed when it returns
    await subscriber.aclose()

Deliberate choices:

* The connection is its own (`connection.dedicated`), with the client's settings but outside
  its pool, and without redis-py's `PubSub`: that one reconnects by itself, silently, and a listener
  must know when it did, since pub/sub delivers nothing sent while it was away.
* When it is killed (`CLIENT KILL TYPE pubsub`), Redis restarts or the network drops, it
  reconnects after a pause that doubles up to `backoff_max`, subscribes again, and only then
  calls the reconnect callbacks. A connection silent for `ping_interval` is sent a PING; one
  that stays silent as long again is dropped.
* Handlers run on the connection's task, one message at a time: they must not block. One that
  raises is logged and the others still run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from kaiwa.bus.base import BusUnavailable
from kaiwa.bus.connection import dedicated

__all__ = ["RedisSubscriber"]

logger = logging.getLogger(__name__)

Handler = Callable[[bytes], None]
_BACKOFF_MIN = 0.05


class RedisSubscriber:
    def __init__(
        self,
        redis: Redis,
        *,
        ping_interval: float = 5.0,
        backoff_max: float = 2.0,
        start_timeout: float = 5.0,
    ) -> None:
        """`redis`: the client whose connection settings it uses (it closes nothing of it).
        `start_timeout`: the most seconds `start` waits for the first subscription."""
        if ping_interval <= 0 or backoff_max <= 0 or start_timeout <= 0:
            raise ValueError("ping_interval, backoff_max and start_timeout must be > 0")
        self._redis = redis
        self._start_timeout = start_timeout
        self._ping_interval = ping_interval
        self._backoff_max = backoff_max
        self._handlers: dict[bytes, list[Handler]] = {}
        self._reconnected: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._connection: AbstractConnection | None = None
        self._ready: asyncio.Future[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._listening = False
        self.connections = 0
        """How many times it has connected and subscribed: 1 after `start`, more after losses."""

    def add(self, channel: str, handler: Handler) -> Callable[[], None]:
        """Call `handler(message)` for every message on `channel`; return what removes it."""
        key = channel.encode()
        handlers = self._handlers.setdefault(key, [])
        handlers.append(handler)
        if len(handlers) == 1 and self._connection is not None:
            self._write(self._connection, "SUBSCRIBE", key)

        def remove() -> None:
            listeners = self._handlers.get(key)
            if listeners is not None and handler in listeners:
                listeners.remove(handler)
                if not listeners:
                    del self._handlers[key]
                    if self._connection is not None:
                        self._write(self._connection, "UNSUBSCRIBE", key)

        return remove

    def on_reconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback()` each time the connection is back (not on the first one)."""
        self._reconnected.append(callback)

        def remove() -> None:
            if callback in self._reconnected:
                self._reconnected.remove(callback)

        return remove

    async def start(self) -> None:
        """Connect and subscribe; `BusUnavailable` if that takes over `start_timeout` s."""
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._task = loop.create_task(self._run(), name="redis-subscriber")
        try:
            async with asyncio.timeout(self._start_timeout):
                await asyncio.shield(self._ready)
        except TimeoutError:
            await self.aclose()
            message = f"Redis pub/sub is unavailable after {self._start_timeout} s"
            raise BusUnavailable(message) from None

    async def aclose(self) -> None:
        task, self._task = self._task, None
        for write in list(self._writes):
            write.cancel()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        delay = _BACKOFF_MIN
        while True:
            connection = dedicated(self._redis)
            self._listening = False
            try:
                await connection.connect()  # type: ignore[no-untyped-call]
                self._connection = connection
                channels = list(self._handlers)
                if channels:
                    await connection.send_command("SUBSCRIBE", *channels)
                await self._listen(connection, len(channels))
            except (RedisError, OSError) as exc:
                if self.connections:
                    logger.warning("Redis pub/sub connection lost (%s); reconnecting", exc)
                if self._listening:
                    delay = _BACKOFF_MIN
            finally:
                self._connection = None
                await connection.disconnect(nowait=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max)

    async def _listen(self, connection: AbstractConnection, subscribing: int) -> None:
        if not subscribing:
            self._subscribed()
        pinged = False
        while True:
            reply = await connection.read_response(timeout=self._ping_interval)
            if reply is None:
                if pinged:
                    raise OSError(f"no answer to PING within {self._ping_interval} s")
                await connection.send_command("PING")
                pinged = True
                continue
            pinged = False
            if not isinstance(reply, list):
                continue  # PONG outside subscribed mode
            kind = reply[0]
            if kind == b"message":
                self._dispatch(reply[1], reply[2])
            elif kind == b"subscribe" and not self._listening:
                subscribing -= 1
                if subscribing <= 0:
                    self._subscribed()

    def _subscribed(self) -> None:
        self._listening = True
        self.connections += 1
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        if self.connections > 1:
            for callback in list(self._reconnected):
                try:
                    callback()
                except Exception:
                    logger.exception("Redis pub/sub reconnect callback failed")

    def _dispatch(self, channel: bytes, message: bytes) -> None:
        for handler in self._handlers.get(channel, ()):
            try:
                handler(message)
            except Exception:
                logger.exception("handler of Redis channel %r failed", channel)

    def _write(self, connection: AbstractConnection, *command: str | bytes) -> None:
        """Send a command from outside the connection's task; a failed write breaks the
        connection, and the reconnect subscribes to everything again."""

        async def send() -> None:
            with contextlib.suppress(RedisError, OSError):
                await connection.send_command(*command)

        task = asyncio.get_running_loop().create_task(send())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
