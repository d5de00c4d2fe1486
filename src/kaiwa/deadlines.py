"""`Deadlines`: many deadlines of one length, with one event-loop timer among them.

    pings = Deadlines(15.0, lambda waiter: waiter.set_result(True))
    pings.arm(waiter)       # `expire(waiter)` in 15 s, unless disarmed before
    pings.disarm(waiter)

A timer of the event loop costs about 670 bytes under uvloop (its handle and libuv's timer), as
much as a fifth of what an open stream may hold, and an idle stream used to keep one per wait:
its reader's wait for the next event (the ping interval) and its model read's `chunk_timeout`.
Deadlines of one length expire in the order they were armed, since the loop's clock only goes
forward: they are kept in that order, and one timer is armed for the first of them. Arming and
disarming cost a dict entry each, less than making and cancelling a timer.

A callback expires once, at its deadline or a little after (it runs from the loop's timer, as it
would from its own), never before.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Deadlines"]

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    def __init__(self, delay: float, expire: Callable[[K], object]) -> None:
        """`expire(key)` runs `delay` seconds after `arm(key)`, unless `disarm(key)` came first."""
        self.delay = delay
        self._expire = expire
        # Oldest first. OrderedDict, not dict: popping from the front of a dict leaves holes
        # that make `next(iter(d))` slow until the next resize.
        self._armed: OrderedDict[K, float] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None
        # Weakly: one that outlives its loop (a model's, a runtime's, in tests) does not keep it.
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    def arm(self, key: K) -> None:
        """`expire(key)` in `delay` seconds; re-arming a key armed already moves its deadline."""
        loop = asyncio.get_running_loop()
        if self._loop is None or self._loop() is not loop:
            # First use, or a new loop (tests): the old one's timer is gone.
            self._loop, self._timer = weakref.ref(loop), None
            self._armed.clear()
        armed = self._armed
        armed.pop(key, None)
        armed[key] = loop.time() + self.delay
        if self._timer is None:
            # For the first deadline: this one, or an earlier one still due (when an expiry
            # arms another).
            self._timer = loop.call_at(armed[next(iter(armed))], self._fire)

    def disarm(self, key: K) -> None:
        """No `expire(key)`; nothing when it is not armed (it expired, or never was)."""
        # The timer stays, for the next deadline or none: it costs nothing to fire early.
        self._armed.pop(key, None)

    def __len__(self) -> int:
        return len(self._armed)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        armed = self._armed
        now = loop.time()
        while armed:
            key = next(iter(armed))
            when = armed[key]
            if when > now:
                if self._timer is None:
                    self._timer = loop.call_at(when, self._fire)
                return
            del armed[key]
            self._expire(key)
