"""The in-process event log: the embedded default, for one server process.

    log = MemoryEventLog(retention=3600, max_age=86400, max_bytes=16 * 1024 * 1024)
    await log.create("resp_1")
    await log.append("resp_1", [frame])            # LogFull past the cap, unless finishing
    read = await log.read("resp_1", 0, wait=15.0)   # LogRead(frames=[frame], last=1, ...)
    log.stats()                                     # LogStats(logs=1, open=1, ...)

Deliberate choices:

* A waiting reader parks one future on its log, which the next append resolves (what
  `asyncio.Condition` does, without the lock): no task per read. Its timeout is a deadline
  among those of the same length (`kaiwa.deadlines`), not a timer of its own: readers all wait
  the ping interval, and a timer costs more than the rest of a parked read.
* Expiry needs no timer per log. Finished logs are kept in the order they finished and open
  logs in the order of their last append; since retention and max age are constants, the
  oldest of each is the first to expire, and a sweep looks only at those. It runs on each
  `create` and every `sweep_interval` seconds in a task started by the first `create` and
  cancelled by `close`.
* A read returns at most `read_batch` frames, so replaying a large log never copies all of it
  into one buffer per reader.
* Sizes count the frames' bytes, not Python's overhead per object (about 40 bytes a frame).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from kaiwa.bus.base import LogFinished, LogFull, LogNotFound, LogRead
from kaiwa.deadlines import Deadlines

__all__ = ["LogStats", "MemoryEventLog"]

_WAIT_LENGTHS = 4
"""How many lengths of wait get a shared timer (`Deadlines`) at once: the ping interval, the
stop watch's second, and room for others."""


@dataclass(frozen=True, slots=True)
class LogStats:
    logs: int
    """Logs held: `open + finished`."""
    open: int
    """Logs still being written."""
    finished: int
    """Logs ended and kept for their retention period."""
    frames: int
    bytes: int
    """Bytes of frames held, over all logs."""


@dataclass(slots=True, eq=False)
class _Log:
    deadline: float
    """Clock time it is evicted at: `max_age` after its last append, `retention` after its end."""
    frames: list[bytes] = field(default_factory=list)
    size: int = 0
    finished: bool = False
    waiters: list[asyncio.Future[bool]] | None = None
    """Readers parked until the next append; each future's result says whether it timed out."""


class MemoryEventLog:
    """Logs live in a dict, bounded in size each and evicted once expired."""

    def __init__(
        self,
        *,
        retention: float = 3600.0,
        max_age: float = 86400.0,
        max_bytes: int = 16 * 1024 * 1024,
        read_batch: int = 1000,
        sweep_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        `retention`: seconds a finished log stays readable. `max_age`: seconds an unfinished
        log is kept without an append (its producer is presumed dead). `max_bytes`: the size
        cap of one log (see `append`). `read_batch`: the most frames one read returns.
        `sweep_interval`: seconds between sweeps for expired logs; by default a tenth of the
        shorter period, between 0.1 s and 60 s. `clock`: monotonic seconds.
        """
        if retention < 0 or max_age <= 0 or max_bytes <= 0 or read_batch <= 0:
            raise ValueError("retention must be >= 0; max_age, max_bytes, read_batch > 0")
        self._retention = retention
        self._max_age = max_age
        self._max_bytes = max_bytes
        self._read_batch = read_batch
        if sweep_interval is None:
            sweep_interval = min(60.0, max(0.1, min(retention, max_age) / 10))
        elif sweep_interval <= 0:
            raise ValueError("sweep_interval must be > 0")
        self._sweep_interval = sweep_interval
        self._clock = clock
        self._logs: dict[str, _Log] = {}
        # Oldest first. OrderedDict, not dict: popping from the front of a dict leaves holes
        # that make `next(iter(d))` slow until the next resize.
        self._open: OrderedDict[str, None] = OrderedDict()
        self._done: OrderedDict[str, None] = OrderedDict()
        self._bytes = 0
        self._frames = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False
        self._waits: dict[float, Deadlines[asyncio.Future[bool]]] = {}

    async def create(self, response_id: str) -> None:
        if self._closed:
            raise RuntimeError("the event log is closed")
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_forever(), name="event-log-sweeper"
            )
        self.evict_expired()
        if response_id not in self._logs:
            self._logs[response_id] = _Log(deadline=self._clock() + self._max_age)
            self._open[response_id] = None

    async def append(self, response_id: str, frames: list[bytes], *, finish: bool = False) -> int:
        """See `EventLog.append`. Past `max_bytes` only a finishing append is accepted, so a
        producer that gets `LogFull` can still end its response with an error event."""
        log = self._logs.get(response_id)
        if log is None:
            raise LogNotFound(response_id)
        if log.finished:
            raise LogFinished(response_id)
        added = sum(map(len, frames))
        if log.size + added > self._max_bytes and not finish:
            raise LogFull(response_id, log.size + added, self._max_bytes)
        log.frames.extend(frames)
        log.size += added
        self._bytes += added
        self._frames += len(frames)
        if finish:
            log.finished = True
            log.deadline = self._clock() + self._retention
            del self._open[response_id]
            self._done[response_id] = None
        else:
            log.deadline = self._clock() + self._max_age
            self._open.move_to_end(response_id)
        _wake(log)
        return len(log.frames)

    async def read(self, response_id: str, after: int, *, wait: float) -> LogRead | None:
        log = self._logs.get(response_id)
        if log is None:
            return None
        after = max(after, 0)
        if len(log.frames) <= after and not log.finished and wait > 0:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            shared = self._deadlines(wait)
            while True:
                # Parked here, not in a helper coroutine: one frame less per waiting reader.
                waiter: asyncio.Future[bool] = loop.create_future()
                if log.waiters is None:
                    log.waiters = [waiter]  # a list: a log has a reader or two, rarely more
                else:
                    log.waiters.append(waiter)
                timer = None
                if shared is not None:
                    shared.arm(waiter)
                else:
                    timer = loop.call_at(deadline, _resolve, waiter, True)
                try:
                    timed_out = await waiter
                finally:
                    if shared is not None:
                        shared.disarm(waiter)
                    elif timer is not None:
                        timer.cancel()
                    if log.waiters is not None and waiter in log.waiters:
                        log.waiters.remove(waiter)
                shared = None  # waiting again (rare): only for what is left of `wait`
                if self._logs.get(response_id) is not log:
                    return None  # evicted, or the store closed, while we waited
                if timed_out or len(log.frames) > after or log.finished:
                    break
        frames = log.frames[after : after + self._read_batch]
        last = after + len(frames)
        return LogRead(frames=frames, last=last, finished=log.finished and last >= len(log.frames))

    async def seal(self, response_id: str, build: Callable[[int], bytes]) -> int | None:
        """See `EventLog.seal`: in one process nothing can slip in between."""
        log = self._logs.get(response_id)
        if log is None or log.finished:
            return None
        seq = len(log.frames) + 1
        await self.append(response_id, [build(seq)], finish=True)
        return seq

    def frames(self, response_id: str) -> list[bytes] | None:
        """Every frame of a log, in order (a new list); None when it does not exist."""
        log = self._logs.get(response_id)
        return None if log is None else list(log.frames)

    async def abandon(self, response_id: str) -> None:
        log = self._logs.get(response_id)
        if log is not None and not log.frames and not log.finished:
            self._evict(response_id)

    def _deadlines(self, wait: float) -> Deadlines[asyncio.Future[bool]] | None:
        """The timer shared by the reads that wait `wait` seconds (the ping interval): None when
        too many lengths are in use, and this read gets a timer of its own."""
        shared = self._waits.get(wait)
        if shared is None:
            if len(self._waits) >= _WAIT_LENGTHS:
                for length in [length for length, d in self._waits.items() if not len(d)]:
                    del self._waits[length]
                if len(self._waits) >= _WAIT_LENGTHS:
                    return None
            shared = self._waits[wait] = Deadlines(wait, _time_out)
        return shared

    def discard(self, response_id: str) -> bool:
        """Drop a log now, whatever its state; its waiting readers wake and get None.

        False when it did not exist.
        """
        if response_id not in self._logs:
            return False
        self._evict(response_id)
        return True

    def stats(self) -> LogStats:
        """What the store holds now, in O(1)."""
        return LogStats(
            logs=len(self._logs),
            open=len(self._open),
            finished=len(self._done),
            frames=self._frames,
            bytes=self._bytes,
        )

    def evict_expired(self) -> int:
        """Drop logs past their deadline; return how many. Costs O(1) when none are."""
        now = self._clock()
        evicted = 0
        for order in (self._done, self._open):
            while order:
                response_id = next(iter(order))
                if self._logs[response_id].deadline > now:
                    break
                self._evict(response_id)
                evicted += 1
        return evicted

    async def close(self) -> None:
        self._closed = True
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None and not sweeper.done():
            sweeper.cancel()
            if sweeper.get_loop() is asyncio.get_running_loop():
                try:
                    await sweeper
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise
        for response_id in list(self._logs):
            self._evict(response_id)
        # Popping never shrinks a dict's table; clearing frees it.
        self._logs.clear()
        self._open.clear()
        self._done.clear()

    def _evict(self, response_id: str) -> None:
        log = self._logs.pop(response_id)
        self._open.pop(response_id, None)
        self._done.pop(response_id, None)
        self._bytes -= log.size
        self._frames -= len(log.frames)
        _wake(log)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            self.evict_expired()


def _wake(log: _Log) -> None:
    waiters, log.waiters = log.waiters, None
    if waiters:
        for waiter in waiters:
            _resolve(waiter, False)


def _time_out(waiter: asyncio.Future[bool]) -> None:
    _resolve(waiter, True)


def _resolve(waiter: asyncio.Future[bool], timed_out: bool) -> None:
    if not waiter.done():
        waiter.set_result(timed_out)
