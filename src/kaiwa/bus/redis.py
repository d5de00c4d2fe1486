"""`RedisEventLog`: the event logs of many replicas, shared through Redis; `connect` makes its
client.

    redis = connect("redis://127.0.0.1:6379/0")
    subscriber = RedisSubscriber(redis)
    await subscriber.start()
    log = RedisEventLog(redis, subscriber, retention=3600, max_age=86400)
    await log.create("resp_1")                    # BusUnavailable when Redis cannot be reached
    await log.append("resp_1", [frame])           # queued: returns at once
    read = await log.read("resp_1", 0, wait=15)   # here from memory, elsewhere from Redis
    await log.close()                             # closes neither redis nor subscriber

The replica producing a log holds all of it in a `MemoryEventLog`, which its own readers read.
Appends are queued; one flusher task writes everything queued, for every log, in one pipelined
round trip — a script per log (`scripts.py`), then one PUBLISH naming the logs that grew (the
doorbell) — and only then appends the frames to the memory log. A frame is readable here
exactly when it is durable in Redis, so a client that resumes on another replica finds there
every frame it read here. Other replicas read Redis, and park on the doorbell.

Deliberate choices:

* An append never waits for Redis, except the finishing one (up to `finish_timeout`): the end
  of a log is durable before the producer moves on. While Redis is down or stalled the flusher
  keeps the queue and retries, pausing up to 2 s between tries. No timer delays a flush
  (unless `linger` asks for one): while one is in flight, the next batch accumulates.
* When Redis lost a log (it restarted empty, or failed over to a replica that lagged), the
  producer uploads it again from its own copy: a running answer loses nothing. Unless the log
  might have expired on its own since Redis last confirmed it (a seal's retention, or
  `max_age`): then it is gone (`LogNotFound`).
* Sealed by another replica (this one was presumed dead): the queue is dropped, the memory copy
  evicted — its readers move on to Redis, where the sealing frame is — and appends raise
  `LogFinished`. Nothing appended after a seal ever becomes readable.
* The finishing flush compacts the log, in the same script: the stream gives way to zlib chunks
  (`chunks.py`), a twentieth of the memory for the retention period. Readers cannot tell.
* Readers elsewhere (`remote.py`) park on the doorbell, and read again at least every
  `poll_interval`, in case one was lost; a log they saw open that vanishes (Redis restarting)
  reads as empty for `vanish_grace` seconds, while its producer uploads it again.
* A finished log stays in its producer's memory for at most a minute; its readers then read
  Redis like everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from kaiwa.bus import chunks, scripts
from kaiwa.bus.base import (
    BusUnavailable,
    EventLogError,
    LogFinished,
    LogFull,
    LogNotFound,
    LogRead,
)
from kaiwa.bus.connection import Command, Pipe, connect, deadline
from kaiwa.bus.memory import MemoryEventLog
from kaiwa.bus.remote import RemoteReads
from kaiwa.bus.subscriber import RedisSubscriber

__all__ = ["RedisEventLog", "connect"]  # connect: from kaiwa.bus.connection

_Refusal = type[LogFinished] | type[LogNotFound]

logger = logging.getLogger(__name__)

_UNAVAILABLE = (RedisError, OSError)  # OSError: TimeoutError too
_LINGER = 60.0
"""Seconds a finished log stays in its producer's memory (and its refusals are remembered)."""
_RETRY_MIN, _RETRY_MAX = 0.05, 2.0
_CLOSE_FLUSH = 1.0
"""Seconds `close` gives the flusher to write what is queued."""
_SWEEP = 10.0
_OFFLOAD = 1 << 20
"""Bytes of frames from which a log is compacted on a worker thread."""


@dataclass(slots=True, eq=False)
class _Produced:
    """A log produced on this replica."""

    keys: tuple[str, str, str]
    """State, stream, chunks."""
    confirmed: float
    """When the last flush Redis confirmed was sent (monotonic)."""
    durable: int = 0
    """Frames Redis confirmed, all appended to the memory log."""
    pending: list[bytes] = field(default_factory=list)
    """Frames `durable + 1`… queued or in flight."""
    size: int = 0
    finishing: bool = False
    """The terminal append was made: no append is accepted after it."""
    final: bool = False
    """The terminal frames are queued: the next flush finishes the log."""
    chunks: list[bytes] | None = None
    """The whole log compacted, sent with the finishing flush."""
    resend: int = 0
    """Redis holds only frames before this one: send again from it (0: nothing to resend)."""
    restore: bool = False
    """Redis lost the log: the next flush creates it again."""
    ended: _Refusal | None = None
    """Finished, sealed or gone: what an append raises now."""
    done: asyncio.Future[_Refusal | None] | None = None
    """The finishing append's wait: None when the end is durable, else what to raise."""


class RedisEventLog:
    """See the module docstring and `EventLog`."""

    def __init__(
        self,
        redis: Redis,
        subscriber: RedisSubscriber,
        *,
        retention: float = 3600.0,
        max_age: float = 86400.0,
        max_bytes: int = 16 * 1024 * 1024,
        read_batch: int = 1000,
        poll_interval: float = 0.5,
        finish_timeout: float = 10.0,
        vanish_grace: float = 10.0,
        linger: float = 0.0,
        prefix: str = "kaiwa:",
    ) -> None:
        """`redis` and `subscriber` stay open: whoever made them closes them. `retention`,
        `max_age`, `max_bytes`, `read_batch`: as for `MemoryEventLog`. `poll_interval`: the
        most seconds a reader elsewhere waits without looking, should a doorbell be lost.
        `finish_timeout`: the most seconds a finishing append waits for Redis. `vanish_grace`:
        see the module docstring. `linger`: seconds the flusher rests after each flush
        (0: never), so that more appends share the next one; frames wait up to that longer.
        `prefix`: of every key and channel."""
        if retention < 0 or max_age <= 0 or max_bytes <= 0 or read_batch <= 0:
            raise ValueError("retention must be >= 0; max_age, max_bytes, read_batch > 0")
        if poll_interval <= 0 or finish_timeout <= 0 or vanish_grace < 0 or linger < 0:
            raise ValueError("poll_interval, finish_timeout > 0; vanish_grace, linger >= 0")
        self._linger = linger
        self._redis = redis
        self._op_timeout = deadline(redis)
        self._pipe = Pipe(redis, timeout=self._op_timeout)
        self._retention_ms = max(1, round(retention * 1000))
        self._max_age_ms = max(1, round(max_age * 1000))
        self._max_age = max_age
        self._unexpired = min(retention, max_age)
        self._max_bytes = max_bytes
        self._read_batch = read_batch
        self._finish_timeout = finish_timeout
        self._prefix = prefix
        self._doorbell = f"{prefix}doorbell"
        self._local = MemoryEventLog(
            retention=min(retention, _LINGER),
            max_age=max_age,
            max_bytes=sys.maxsize,
            read_batch=read_batch,
        )
        self._produced: dict[str, _Produced] = {}
        self._dirty: dict[str, _Produced] = {}
        self._kick: asyncio.Future[None] | None = None
        self._idle: asyncio.Future[None] | None = None
        self._flushing = False
        self._flusher: asyncio.Task[None] | None = None
        self._swept = time.monotonic()
        self._remote = RemoteReads(
            redis,
            prefix=prefix,
            read_batch=read_batch,
            poll_interval=poll_interval,
            vanish_grace=vanish_grace,
            timeout=self._op_timeout,
        )
        self._closed = False
        self._unsubscribe = (
            subscriber.add(self._doorbell, self._on_doorbell),
            subscriber.on_reconnect(self._remote.wake_all),
        )

    # -- producing ---------------------------------------------------------------------------

    async def create(self, response_id: str) -> None:
        if self._closed:
            raise RuntimeError("the event log is closed")
        if response_id in self._produced:
            return
        self._start()
        keys = scripts.keys(self._prefix, response_id)
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self._op_timeout):
                created = await self._redis.set(keys[0], b"o:0", nx=True, px=self._max_age_ms)
        except _UNAVAILABLE as exc:
            raise BusUnavailable(f"Redis is unavailable: {exc}") from exc
        if not created or response_id in self._produced or self._closed:
            return  # it exists: produced elsewhere, or finished
        self._produced[response_id] = _Produced(keys, confirmed=sent)
        self._local.discard(response_id)
        await self._local.create(response_id)

    async def append(self, response_id: str, frames: list[bytes], *, finish: bool = False) -> int:
        """See `EventLog.append`: queued, not yet readable, when it returns (unless `finish`)."""
        produced = self._produced.get(response_id)
        if produced is None or produced.ended is not None:
            raise await self._refusal(response_id, produced)
        if produced.finishing:
            raise LogFinished(response_id)
        added = len(frames[0]) if len(frames) == 1 else sum(map(len, frames))
        if finish:
            return await self._finish(response_id, produced, frames, added)
        size = produced.size + added
        if size > self._max_bytes:
            raise LogFull(response_id, size, self._max_bytes)
        produced.size = size
        produced.pending += frames
        self._mark(response_id, produced)
        return produced.durable + len(produced.pending)

    async def seal(self, response_id: str, build: Callable[[int], bytes]) -> int | None:
        produced = self._produced.get(response_id)
        if produced is not None:
            if produced.ended is not None or produced.finishing:
                return None
            seq = produced.durable + len(produced.pending) + 1
            try:
                await self.append(response_id, [build(seq)], finish=True)
            except EventLogError:
                return None
            return seq
        keys = scripts.keys(self._prefix, response_id)
        try:
            async with asyncio.timeout(self._op_timeout):
                state = await scripts.call(self._redis.get(keys[0]))
            # Compare-and-set on the last frame: retried while an append slips in between.
            while state is not None and state.startswith(b"o:"):
                expected = int(state[2:])
                frame = build(expected + 1)
                async with asyncio.timeout(self._op_timeout):
                    code, stored = await scripts.SEAL.run(
                        self._redis, keys[:2], expected, frame, self._retention_ms,
                        self._doorbell, response_id,
                    )  # fmt: skip
                if code == 1:
                    return int(stored)
                state = b"o:%d" % stored if code == 2 else None
        except _UNAVAILABLE as exc:
            raise BusUnavailable(f"Redis is unavailable: {exc}") from exc
        return None

    async def abandon(self, response_id: str) -> None:
        produced = self._produced.get(response_id)
        if produced is None or produced.durable or produced.pending or produced.finishing:
            return
        del self._produced[response_id]
        self._dirty.pop(response_id, None)
        self._local.discard(response_id)
        try:
            async with asyncio.timeout(self._op_timeout):
                await self._redis.delete(*produced.keys)
        except _UNAVAILABLE as exc:
            logger.warning("could not drop the empty log of %s (it expires): %s", response_id, exc)

    async def flush(self) -> None:
        """Wait until everything appended so far is in Redis, and readable everywhere."""
        while self._dirty or self._flushing:
            if self._idle is None:
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)

    async def _refusal(
        self, response_id: str, produced: _Produced | None
    ) -> LogFinished | LogNotFound:
        if produced is not None and produced.ended is not None:
            return produced.ended(response_id)
        if self._closed:
            return LogNotFound(response_id)
        try:
            async with asyncio.timeout(self._op_timeout):
                state = await scripts.call(
                    self._redis.get(scripts.keys(self._prefix, response_id)[0])
                )
        except _UNAVAILABLE:
            return LogNotFound(response_id)
        if state is not None and state.startswith(b"d:"):
            return LogFinished(response_id)
        return LogNotFound(response_id)

    async def _finish(
        self, response_id: str, produced: _Produced, frames: list[bytes], added: int
    ) -> int:
        produced.finishing = True
        produced.size += added
        held = self._local.frames(response_id)
        if held is not None and len(held) == produced.durable:
            whole = [*held, *produced.pending, *frames]
            if produced.size > _OFFLOAD:
                packed = await asyncio.to_thread(chunks.pack, whole)
            else:
                packed = chunks.pack(whole)
            if produced.ended is not None:
                raise produced.ended(response_id)
            produced.chunks = packed
        produced.pending += frames
        produced.final = True
        last = produced.durable + len(produced.pending)
        done = produced.done = asyncio.get_running_loop().create_future()
        self._mark(response_id, produced)
        try:
            async with asyncio.timeout(self._finish_timeout):
                refused = await asyncio.shield(done)
        except TimeoutError:
            logger.warning(
                "the end of event log %s is not in Redis after %s s; still trying",
                response_id,
                self._finish_timeout,
            )
            return last
        if refused is not None:
            raise refused(response_id)
        return last

    def _mark(self, response_id: str, produced: _Produced) -> None:
        self._dirty[response_id] = produced
        kick = self._kick
        if kick is not None and not kick.done():
            kick.set_result(None)

    def _start(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_forever(), name="event-log-flusher"
            )
        now = time.monotonic()
        if now - self._swept >= _SWEEP:
            self._swept = now
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Forget refused logs after a while, and open ones as old as `max_age`."""
        for response_id, produced in list(self._produced.items()):
            age = now - produced.confirmed
            if age > (_LINGER if produced.ended is not None else self._max_age):
                del self._produced[response_id]

    async def _flush_forever(self) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.0
        while True:
            if not self._dirty:
                idle, self._idle = self._idle, None
                if idle is not None and not idle.done():
                    idle.set_result(None)
                if self._closed:
                    return
                self._kick = loop.create_future()
                await self._kick
                self._kick = None
                continue
            batch, self._dirty = self._dirty, {}
            self._flushing = True
            try:
                error = await self._flush(batch)
            except _UNAVAILABLE as exc:
                error = exc
                self._dirty = {**batch, **self._dirty}
            finally:
                self._flushing = False
            if error is None:
                if delay:
                    logger.warning("Redis is back: the event logs' queue is written")
                delay = 0.0
                if self._linger and not self._closed:
                    await asyncio.sleep(self._linger)
                continue
            if not delay:
                logger.warning("Redis is unavailable (%s): event logs are queued", error)
            delay = min(max(delay * 2, _RETRY_MIN), _RETRY_MAX)
            await asyncio.sleep(delay)

    async def _flush(self, batch: dict[str, _Produced]) -> Exception | None:
        """One round trip for every log in `batch`; what failed is marked again."""
        commands: list[Command] = []
        sent: list[tuple[str, _Produced, int, bool]] = []
        rung: list[str] = []
        for response_id, produced in batch.items():
            if produced.ended is not None:
                continue
            count = len(produced.pending)
            first = produced.resend or produced.durable + 1
            last = produced.durable + count
            flags = ("f" if produced.final else "") + ("r" if produced.restore else "")
            ttls = (self._max_age_ms, self._retention_ms)
            head = ("EVALSHA", scripts.APPEND.sha, 3, *produced.keys, first, last, flags, *ttls)
            if produced.final and produced.chunks is not None:
                commands.append((*head, len(produced.chunks), *produced.chunks))
            else:
                frames = produced.pending
                if produced.resend:
                    held = self._local.frames(response_id)
                    if held is None or len(held) < produced.durable:
                        self._end(response_id, produced, LogNotFound)
                        continue
                    frames = held[first - 1 : produced.durable] + frames
                commands.append((*head, 0, *frames))
            sent.append((response_id, produced, count, produced.final))
            if count or produced.final or produced.resend:
                rung.append(response_id)
        if not sent:
            return None
        if rung:
            commands.append(("PUBLISH", self._doorbell, " ".join(rung)))
        started = time.monotonic()
        results = await self._pipe.send(commands)
        error: Exception | None = None
        for (response_id, produced, count, finish), result in zip(sent, results, strict=False):
            if isinstance(result, Exception):
                error = result
                self._mark(response_id, produced)
            elif result[0] == 1:
                await self._confirmed(response_id, produced, count, finish, started)
            elif result[0] == 0:
                self._missing(response_id, produced)
            elif result[0] == 2:
                self._end(response_id, produced, LogFinished)
            else:
                produced.resend = int(result[1]) + 1
                self._mark(response_id, produced)
        if isinstance(error, NoScriptError):
            await self._redis.script_load(scripts.APPEND.source)
            return None
        return error

    async def _confirmed(
        self, response_id: str, produced: _Produced, count: int, finish: bool, sent: float
    ) -> None:
        produced.confirmed = sent
        produced.resend = 0
        produced.restore = False
        if count == len(produced.pending):
            frames, produced.pending = produced.pending, []
        else:
            frames = produced.pending[:count]
            del produced.pending[:count]
        produced.durable += count
        with contextlib.suppress(EventLogError):  # the memory copy expired meanwhile
            await self._local.append(response_id, frames, finish=finish)
        if finish:
            produced.ended = LogFinished
            produced.chunks = None
            _settle(produced, None)

    def _missing(self, response_id: str, produced: _Produced) -> None:
        # Gone before it could have expired since Redis last confirmed it: Redis lost it.
        if time.monotonic() - produced.confirmed < self._unexpired:
            produced.restore = True
            produced.resend = 1 if produced.durable else 0
            self._mark(response_id, produced)
        else:
            self._end(response_id, produced, LogNotFound)

    def _end(self, response_id: str, produced: _Produced, refusal: _Refusal) -> None:
        produced.ended = refusal
        produced.confirmed = time.monotonic()
        produced.pending = []
        produced.chunks = None
        self._local.discard(response_id)
        _settle(produced, refusal)

    # -- reading -----------------------------------------------------------------------------

    async def read(self, response_id: str, after: int, *, wait: float) -> LogRead | None:
        if self._closed:
            return None
        deadline = asyncio.get_running_loop().time() + wait
        read = await self._local.read(response_id, after, wait=wait)
        if read is not None or self._closed:
            return read
        return await self._remote.read(response_id, after, deadline)

    def _on_doorbell(self, message: bytes) -> None:
        """`rid rid …`: these logs grew. `!rid`: sealed, maybe under its producer here."""
        for key in message.split(b" "):
            if key[:1] == b"!":
                key = key[1:]
                produced = self._produced.get(key.decode())
                if produced is not None and produced.ended is None:
                    self._mark(key.decode(), produced)  # its next flush finds the seal
            self._remote.wake(key)

    # -- both --------------------------------------------------------------------------------

    async def close(self) -> None:
        """Write what is queued (for up to a second), then wake every reader with None."""
        if self._closed:
            return
        self._closed = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            kick = self._kick
            if kick is not None and not kick.done():
                kick.set_result(None)
            done, _ = await asyncio.wait({flusher}, timeout=_CLOSE_FLUSH)
            if not done:
                flusher.cancel()
                await asyncio.wait({flusher})
        await self._pipe.aclose()
        for produced in self._produced.values():
            _settle(produced, None)
        idle, self._idle = self._idle, None
        if idle is not None and not idle.done():
            idle.set_result(None)
        self._remote.close()
        await self._local.close()
        self._produced.clear()
        self._dirty.clear()


def _settle(produced: _Produced, refusal: _Refusal | None) -> None:
    done = produced.done
    if done is not None and not done.done():
        done.set_result(refusal)
