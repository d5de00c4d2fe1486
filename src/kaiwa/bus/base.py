"""`EventLog`: an ordered, append-only log of encoded SSE frames per response.

The producer appends frames numbered 1, 2, 3…; readers follow from a cursor (the last sequence
number they have), live until the log is finished. Frames are encoded once, when appended, so
a thousand readers of one response cost no more serialisation than one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LogRead:
    frames: list[bytes]
    """Encoded frames after the cursor, in order (may be empty on a timeout)."""
    last: int
    """Sequence number of the last frame returned, or the cursor when none were."""
    finished: bool
    """The log is complete and `frames` reaches its end: only `[DONE]` is left to send."""


class EventLog(Protocol):
    async def create(self, response_id: str) -> None:
        """Open an empty log for a new response."""
        ...

    async def append(self, response_id: str, frames: list[bytes], *, finish: bool = False) -> int:
        """Append frames (already numbered by the producer); return the new last sequence.

        With `finish`, the log is complete after these frames and starts its retention period.
        """
        ...

    async def read(self, response_id: str, after: int, *, wait: float) -> LogRead | None:
        """Frames after `after`, waiting up to `wait` seconds for some when there are none.

        None when no such log exists (never created, or expired).
        """
        ...

    async def close(self) -> None: ...
