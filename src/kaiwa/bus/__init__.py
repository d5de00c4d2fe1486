"""The event log every response writes and every reader follows."""

from kaiwa.bus.base import EventLog, EventLogError, LogFinished, LogFull, LogNotFound, LogRead
from kaiwa.bus.memory import LogStats, MemoryEventLog

__all__ = [
    "EventLog",
    "EventLogError",
    "LogFinished",
    "LogFull",
    "LogNotFound",
    "LogRead",
    "LogStats",
    "MemoryEventLog",
]
