"""The event log every response writes and every reader follows."""

from kaiwa.bus.base import EventLog, LogRead
from kaiwa.bus.memory import MemoryEventLog

__all__ = ["EventLog", "LogRead", "MemoryEventLog"]
