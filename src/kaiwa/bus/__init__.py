"""The event log every response writes and every reader follows.

`RedisEventLog`, `RedisSubscriber` and `connect` need redis-py (the server extra); they are
imported on first use, so that one process with the in-memory log never loads it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from kaiwa.bus.base import (
    BusUnavailable,
    EventLog,
    EventLogError,
    LogFinished,
    LogFull,
    LogNotFound,
    LogRead,
)
from kaiwa.bus.memory import LogStats, MemoryEventLog

if TYPE_CHECKING:
    from kaiwa.bus.connection import connect
    from kaiwa.bus.redis import RedisEventLog
    from kaiwa.bus.subscriber import RedisSubscriber

__all__ = [
    "BusUnavailable",
    "EventLog",
    "EventLogError",
    "LogFinished",
    "LogFull",
    "LogNotFound",
    "LogRead",
    "LogStats",
    "MemoryEventLog",
    "RedisEventLog",
    "RedisSubscriber",
    "connect",
]

_LAZY = {
    "RedisEventLog": "kaiwa.bus.redis",
    "connect": "kaiwa.bus.connection",
    "RedisSubscriber": "kaiwa.bus.subscriber",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kaiwa.bus' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
