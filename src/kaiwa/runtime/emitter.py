"""`Emitter`: numbers, encodes and appends one response's events to its log.

Events are encoded to SSE frames exactly once, here. The emitter also keeps the idle deadline:
each event pushes it forward (at most once a second, or a tenth of the timeout, so the hot path
stays a comparison). The answer's `asyncio.Timeout` keeps no timer of its own meanwhile: the
deadlines of every answer share one (`Emitter.idle_deadlines`, owned by the runtime), and at
the deadline the `Timeout` is told to expire, which it then does as it would have.

Deliberate oddity: a text delta, the event of almost every frame, is neither built as an
`OutputTextDelta` nor dumped by pydantic. `DeltaFrames` writes the same bytes from a template,
and the state folds the bare text: a seventh of the cost per token.
"""

from __future__ import annotations

import asyncio

from kaiwa.bus import EventLog
from kaiwa.deadlines import Deadlines
from kaiwa.protocol import Event, ResponseState, encode_frame
from kaiwa.protocol.events import (
    TERMINAL_TYPES,
    ReasoningStepEnd,
    ReasoningStepStart,
    StepEnd,
    StepStart,
)
from kaiwa.protocol.sse import DeltaFrames


class Emitter:
    def __init__(self, log: EventLog, response_id: str, chat_id: int) -> None:
        self.response_id = response_id
        self.chat_id = chat_id
        self.state = ResponseState(response_id=response_id, chat_id=chat_id)
        self._log = log
        self._deltas = DeltaFrames(response_id, chat_id)
        self._seq = 0
        self._lock = asyncio.Lock()
        self._deadline: asyncio.Timeout | None = None
        self._shared: Deadlines[Emitter] | None = None
        """The shared idle deadlines this answer's is armed on, within `watching_idle`."""
        self._idle = 0.0
        self._pushed_at = 0.0
        self._granularity = 1.0
        self.finished = False

    @staticmethod
    def idle_deadlines(idle: float) -> Deadlines[Emitter]:
        """The shared timer for the idle deadlines of answers with this timeout, for
        `watching_idle` (a uvloop timer costs ~670 bytes, and an idle stream's answer would
        hold one all along)."""
        return Deadlines(idle, Emitter._expire_idle)

    def watching_idle(self, deadline: asyncio.Timeout, shared: Deadlines[Emitter]) -> Emitter:
        """For a `with` block: within it, push `deadline` forward by `shared.delay` seconds
        on every event, on `shared`'s timer (from `idle_deadlines`) instead of its own.

        Outside it the deadline is left alone: once expired or exited it refuses to move, and
        events still come after it (a late title, the terminal event). The emitter is its own
        context manager, not a generator's, which an answer would hold all along.
        """
        self._deadline, self._shared, self._idle = deadline, shared, shared.delay
        self._granularity = min(1.0, self._idle / 10)
        self._pushed_at = asyncio.get_running_loop().time()
        return self

    def __enter__(self) -> None:
        deadline, shared = self._deadline, self._shared
        if deadline is None or shared is None or deadline.when() is None:
            self._shared = None  # no deadline to stand in for
            return
        deadline.reschedule(None)  # its timer goes; the shared one stands in for it
        shared.arm(self)

    def __exit__(self, *exc_info: object) -> None:
        deadline, self._deadline = self._deadline, None
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.disarm(self)
            if deadline is not None and not deadline.expired():
                # Its own timer again, at the last deadline pushed: as if it had kept it.
                deadline.reschedule(self._pushed_at + self._idle)

    def _expire_idle(self) -> None:
        deadline = self._deadline
        if deadline is not None and not deadline.expired():
            deadline.reschedule(asyncio.get_running_loop().time())  # expires it, as its timer would

    async def delta(self, text: str) -> None:
        """Append one `response.output_text.delta`; see `emit`."""
        async with self._lock:
            if self.finished:
                return
            seq = self._seq + 1
            await self._log.append(self.response_id, [self._deltas.encode(seq, text)])
            self._seq = seq
            self.state.apply_delta(text)
        self._push_deadline()

    async def step_start(self, step: StepStart) -> None:
        await self.emit(
            ReasoningStepStart(response_id=self.response_id, chat_id=self.chat_id, step=step)
        )

    async def step_end(self, step: StepEnd) -> None:
        await self.emit(
            ReasoningStepEnd(response_id=self.response_id, chat_id=self.chat_id, step=step)
        )

    @property
    def next_id(self) -> int:
        """The id the next event will carry."""
        return self._seq + 1

    async def emit(self, event: Event) -> None:
        """Append one event. Raises `LogFull` (nothing appended, nothing counted) when the log
        is at its size cap; a terminal event is always accepted."""
        finish = event.type in TERMINAL_TYPES
        async with self._lock:
            if self.finished:
                return
            seq = self._seq + 1
            frame = encode_frame(seq, event.type, event.model_dump_json())
            await self._log.append(self.response_id, [frame], finish=finish)
            # Only an appended event counts: its number is its position in the log.
            self._seq = seq
            self.state.apply(event)
            self.finished = finish
        self._push_deadline()

    def _push_deadline(self) -> None:
        if self._deadline is not None:
            now = asyncio.get_running_loop().time()
            if now - self._pushed_at >= self._granularity:
                self._pushed_at = now
                if self._shared is not None:
                    self._shared.arm(self)
                else:
                    self._deadline.reschedule(now + self._idle)
