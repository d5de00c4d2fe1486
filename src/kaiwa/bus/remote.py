"""`RemoteReads`: a replica's reads of event logs produced elsewhere, from Redis.

    reads = RemoteReads(redis, prefix="kaiwa:", read_batch=1000, poll_interval=0.5,
                        vanish_grace=10.0, timeout=7.0)
    read = await reads.read("resp_1", after=0, deadline=loop.time() + 15)
    reads.wake(b"resp_1")        # on its doorbell
    reads.wake_all()             # the subscriber reconnected: doorbells may have been lost

A read is one script (`scripts.READ`): the log's state and the frames after the cursor, from
the stream, or from the chunk holding them once the log is compacted. With nothing to return
and time left, the reader parks a future on the log's doorbell, and reads again when it rings
or after `poll_interval` (in case a doorbell was lost), until its deadline.

Deliberate choices:

* No connection and no task per reader: a dict of futures per log, resolved by the doorbell.
* Concurrent reads of one log from one cursor — its readers on this replica, all woken by the
  same doorbell — share one round trip (a task per distinct read).
* A log this replica saw open that vanishes before it could have expired (Redis restarted
  empty) reads as empty, not None, for `vanish_grace` seconds: its producer is uploading it
  again. The replica remembers the last 65,536 logs it saw open.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from kaiwa.bus import chunks, scripts
from kaiwa.bus.base import BusUnavailable, LogRead

__all__ = ["RemoteReads"]

_FOLLOWED = 65536


@dataclass(frozen=True, slots=True)
class _Fetched:
    frames: list[bytes]
    stored: int
    """The log's last sequence number in Redis."""
    finished: bool
    ttl: float
    """Seconds before the log expires unless it is written."""


class RemoteReads:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        read_batch: int,
        poll_interval: float,
        vanish_grace: float,
        timeout: float,
    ) -> None:
        """`timeout`: the most seconds one round trip may take before `BusUnavailable`."""
        self._redis = redis
        self._prefix = prefix
        self._read_batch = read_batch
        self._poll = poll_interval
        self._vanish_grace = vanish_grace
        self._timeout = timeout
        self._bells: dict[bytes, dict[asyncio.Future[None], None]] = {}
        self._fetches: dict[tuple[str, int], asyncio.Task[_Fetched | None]] = {}
        self._followed: OrderedDict[str, float] = OrderedDict()
        self._closed = False

    async def read(self, response_id: str, after: int, deadline: float) -> LogRead | None:
        """`EventLog.read` of a log held elsewhere, waiting until the loop time `deadline`."""
        loop = asyncio.get_running_loop()
        key = response_id.encode()
        after = max(after, 0)
        while True:
            bell = self._ring_me(key, loop) if loop.time() < deadline else None
            try:
                fetched = await self._fetch(response_id, after)
                if self._closed:
                    return None
                now = loop.time()
                if fetched is None:
                    if not self._vanished_briefly(response_id, now):
                        return None
                else:
                    self._saw(response_id, fetched, now)
                    frames = fetched.frames
                    last = after + len(frames)
                    finished = fetched.finished and last >= fetched.stored
                    if frames or finished:
                        return LogRead(frames=frames, last=last, finished=finished)
                if bell is None:
                    return LogRead(frames=[], last=after, finished=False)
                await _park(bell, loop, min(deadline, now + self._poll))
            finally:
                if bell is not None:
                    self._unring(key, bell)

    def wake(self, key: bytes) -> None:
        """The doorbell of log `key` (its response id, encoded) rang."""
        waiting = self._bells.pop(key, None)
        if waiting:
            for bell in waiting:
                _resolve(bell)

    def wake_all(self) -> None:
        bells, self._bells = self._bells, {}
        for waiting in bells.values():
            for bell in waiting:
                _resolve(bell)

    def close(self) -> None:
        """Wake every reader with None, and stop the reads in flight."""
        self._closed = True
        for task in list(self._fetches.values()):
            task.cancel()
        self.wake_all()
        self._followed.clear()

    async def _fetch(self, response_id: str, after: int) -> _Fetched | None:
        key = (response_id, after)
        task = self._fetches.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch_once(response_id, after))
            self._fetches[key] = task
            task.add_done_callback(functools.partial(self._fetched, key))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and self._closed and not (current and current.cancelling()):
                return None  # `close` stopped it
            raise

    def _fetched(self, key: tuple[str, int], task: asyncio.Task[_Fetched | None]) -> None:
        if self._fetches.get(key) is task:
            del self._fetches[key]
        if not task.cancelled():
            task.exception()  # retrieved: the readers that wanted it got it

    async def _fetch_once(self, response_id: str, after: int) -> _Fetched | None:
        keys = scripts.keys(self._prefix, response_id)
        try:
            async with asyncio.timeout(self._timeout):
                reply = await scripts.READ.run(
                    self._redis, keys, after, self._read_batch, chunks.CHUNK
                )
        except (RedisError, OSError) as exc:  # OSError: TimeoutError too
            raise BusUnavailable(f"Redis is unavailable: {exc}") from exc
        if reply is None:
            return None
        state: bytes = reply[0]
        stored = int(state[2:])
        frames: list[bytes]
        if len(reply) == 2:
            frames = []
        elif reply[2] == b"z":
            index = after // chunks.CHUNK
            count = min(chunks.CHUNK, stored - index * chunks.CHUNK)
            start = after - index * chunks.CHUNK
            frames = chunks.unpack(reply[3], count=count, start=start, limit=self._read_batch)
        else:
            frames = reply[3:]
        return _Fetched(frames, stored, finished=state[:1] == b"d", ttl=reply[1] / 1000)

    def _saw(self, response_id: str, fetched: _Fetched, now: float) -> None:
        if fetched.finished:
            self._followed.pop(response_id, None)
            return
        self._followed[response_id] = now + fetched.ttl
        self._followed.move_to_end(response_id)
        if len(self._followed) > _FOLLOWED:
            self._followed.popitem(last=False)

    def _vanished_briefly(self, response_id: str, now: float) -> bool:
        until = self._followed.get(response_id)
        if until is None or now >= until:
            self._followed.pop(response_id, None)
            return False
        self._followed[response_id] = min(until, now + self._vanish_grace)
        return True

    def _ring_me(self, key: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        bell: asyncio.Future[None] = loop.create_future()
        self._bells.setdefault(key, {})[bell] = None
        return bell

    def _unring(self, key: bytes, bell: asyncio.Future[None]) -> None:
        waiting = self._bells.get(key)
        if waiting is not None:
            waiting.pop(bell, None)
            if not waiting:
                del self._bells[key]


async def _park(bell: asyncio.Future[None], loop: asyncio.AbstractEventLoop, until: float) -> None:
    timer = loop.call_at(until, _resolve, bell)
    try:
        await bell
    finally:
        timer.cancel()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
