"""`EventLog`: an ordered, append-only log of encoded SSE frames per response.

The producer appends frames; the n-th frame ever appended to a log has sequence number n
(1, 2, 3…), and the producer encodes that same number in the frame's `id:` line, so a client's
`Last-Event-ID` is a cursor into the log. Readers follow from a cursor (the last sequence number
they have), live until the log is finished. Frames are encoded once, when appended, so a thousand
readers of one response cost no more serialisation than one. The log never parses a frame.

A log's life::

    create ──► append … append ──► append(finish=True) ──► readable for `retention` ──► gone
                   │
                   └─ no append for `max_age` (the producer died) ──► gone

The contract is written so that a Redis Streams implementation can follow it word for word:
one stream per response, each frame added with the explicit id `<seq>-0` (XADD), a reader's
cursor `n` read as XREAD BLOCK from `n-0`, and retention as EXPIRE on the keys when the log
finishes. Deliberate choices, each stated again where it applies:

* The terminal append is accepted whatever the log's size, so that every log can end.
* A read may return fewer frames than are available (a batch, like XREAD COUNT);
  `finished` says whether the returned frames reach the end.
* One producer appends to a log at a time; readers are any number, anywhere.
* A sweeper may `seal` the log of a producer presumed dead: one terminal frame, exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
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


class EventLogError(Exception):
    """An append the log refuses. Carries the response id."""

    def __init__(self, response_id: str, message: str) -> None:
        super().__init__(message)
        self.response_id = response_id


class LogNotFound(EventLogError):
    """Appending to a log that does not exist: never created, or already evicted."""

    def __init__(self, response_id: str) -> None:
        super().__init__(response_id, f"event log {response_id} does not exist")


class LogFinished(EventLogError):
    """Appending to a log after its terminal append."""

    def __init__(self, response_id: str) -> None:
        super().__init__(response_id, f"event log {response_id} is finished")


class LogFull(EventLogError):
    """Appending would take the log past its size cap; nothing was appended.

    The producer should end the response with an error: its terminal append is accepted even
    past the cap.
    """

    def __init__(self, response_id: str, size: int, limit: int) -> None:
        super().__init__(
            response_id,
            f"event log {response_id} would hold {size} bytes, over its cap of {limit}",
        )
        self.size = size
        """Bytes the log would hold had the append been accepted."""
        self.limit = limit


class BusUnavailable(Exception):
    """The shared bus (Redis) cannot be reached within its timeouts: the server answers 503.

    Raised by `create`, by `read` of a log held on another replica, and by `seal`; never by an
    append, which a Redis log queues and retries in the background.
    """


class EventLog(Protocol):
    """Per-response event logs. Every method is safe to call from many tasks at once."""

    async def create(self, response_id: str) -> None:
        """Open an empty log for a new response; a no-op if it already exists.

        From then on `read` returns a `LogRead` (not None) for it, until it is evicted: its
        retention after the terminal append, or `max_age` without an append. (Redis: a small
        marker key with EXPIRE max_age, since an empty stream does not exist.)
        """
        ...

    async def append(self, response_id: str, frames: list[bytes], *, finish: bool = False) -> int:
        """Append frames, in order, as one unit; return the sequence number of the last one.

        The first frame of a log is sequence 1; the producer numbers its frames' `id:` lines the
        same way (the log does not check). `frames` may be empty (e.g. a bare `finish`). Each
        append also restarts the log's `max_age` clock (Redis: EXPIRE max_age in the same call).

        With `finish`, the log is complete after these frames: waiting readers wake, and the log
        stays readable for the retention period (Redis: EXPIRE retention). A finishing append is
        always accepted, even past the size cap, so that every log can end — a log may therefore
        exceed its cap by the size of its terminal frames.

        Raises `LogFull` (nothing appended) when the frames would take the log past its size cap
        and `finish` is false; `LogFinished` after the terminal append; `LogNotFound` when the
        log does not exist. Appends to one log must not run concurrently (one producer).

        Frames may become readable only after `append` returns (a Redis log shows them, here and
        on every replica, once they are durable); a finishing append returns once they are.
        """
        ...

    async def seal(self, response_id: str, build: Callable[[int], bytes]) -> int | None:
        """End the log of a response whose producer died, exactly once; return the frame's seq.

        Atomically, if the log is open and its last frame is L, append `build(L + 1)` as its
        terminal frame (as `append(..., finish=True)` would) and return L + 1. None when the log
        is already finished or does not exist. A producer that appends afterwards gets
        `LogFinished`, and nothing it appends becomes readable.
        """
        ...

    async def read(self, response_id: str, after: int, *, wait: float) -> LogRead | None:
        """Frames with sequence numbers strictly greater than `after`, in order.

        * Frames available: return at once (without waiting), possibly only the first of them
          (a batch); `last` is the sequence number of the last one returned.
        * None available and the log is not finished — including a cursor beyond the end: wait
          up to `wait` seconds, returning as soon as an append brings frames after the cursor or
          the terminal append ends the log; any number of readers may wait on one log, and all
          of them wake. On timeout return no frames, with `last` equal to the cursor and
          `finished` false. (A reader whose cursor is past the end of a log may learn that it
          finished only at its timeout: XREAD does not wake for ids below its cursor.)
        * The log is finished: never wait. `finished` is true when the returned frames reach
          the end (also when none are returned because the cursor is at or past the end).
        * A negative `after` is read as 0.

        None when no such log exists: never created, evicted, or evicted while waiting.
        """
        ...

    async def abandon(self, response_id: str) -> None:
        """Drop a log created here that nothing was appended to: its response could not start
        (the turn was refused after the log was opened). A no-op for any other log."""
        ...

    async def close(self) -> None:
        """Release resources; waiting readers wake and get None. Logs held in memory are lost."""
        ...
