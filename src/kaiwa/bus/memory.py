"""The in-process event log: the embedded default, for one server process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from kaiwa.bus.base import LogRead


@dataclass(slots=True)
class _Log:
    frames: list[bytes] = field(default_factory=list)
    finished: bool = False
    changed: asyncio.Future[None] | None = None
    """Resolved (and replaced) on each append: every waiting reader wakes at once."""


class MemoryEventLog:
    """Logs live in a dict; a finished log is evicted after `retention` seconds."""

    def __init__(self, *, retention: float = 3600.0) -> None:
        self._logs: dict[str, _Log] = {}
        self._retention = retention
        self._evictions: dict[str, asyncio.TimerHandle] = {}

    async def create(self, response_id: str) -> None:
        self._logs.setdefault(response_id, _Log())

    async def append(self, response_id: str, frames: list[bytes], *, finish: bool = False) -> int:
        log = self._logs[response_id]
        if log.finished:
            raise RuntimeError(f"event log {response_id} is finished")
        log.frames.extend(frames)
        if finish:
            log.finished = True
            loop = asyncio.get_running_loop()
            self._evictions[response_id] = loop.call_later(
                self._retention, self._evict, response_id
            )
        if log.changed is not None:
            if not log.changed.done():
                log.changed.set_result(None)
            log.changed = None
        return len(log.frames)

    async def read(self, response_id: str, after: int, *, wait: float) -> LogRead | None:
        log = self._logs.get(response_id)
        if log is None:
            return None
        if len(log.frames) <= after and not log.finished:
            if log.changed is None:
                log.changed = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(log.changed), wait)
            except TimeoutError:
                return LogRead(frames=[], last=after, finished=False)
        frames = log.frames[after:]
        last = after + len(frames)
        return LogRead(frames=frames, last=last, finished=log.finished and last == len(log.frames))

    def _evict(self, response_id: str) -> None:
        self._logs.pop(response_id, None)
        self._evictions.pop(response_id, None)

    async def close(self) -> None:
        for handle in self._evictions.values():
            handle.cancel()
        self._evictions.clear()
        self._logs.clear()
