"""`ResponseState`: what a stream has said so far, accumulated from its events.

Pure and shared: the client's `final_text()`, the server's persistence and the JS client all fold
events the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kaiwa.protocol.events import (
    ChatTitleUpdated,
    Event,
    OutputTextCompleted,
    OutputTextDelta,
    ReasoningStepEnd,
    ReasoningStepStart,
    ResponseError,
    ResponseStatus,
    TokenUsage,
)


@dataclass
class ResponseState:
    """Fold events with `apply`; read the text, steps, usage and status at any point.

    >>> s = ResponseState()
    >>> s.apply(OutputTextDelta(response_id="r", chat_id=1, delta="こん"))
    >>> s.apply(OutputTextDelta(response_id="r", chat_id=1, delta="にちは"))
    >>> s.text
    'こんにちは'
    """

    response_id: str | None = None
    chat_id: int | None = None
    status: ResponseStatus = "in_progress"
    title: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)
    error: ResponseError | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    """Each step as `{id, type, tool_name, content, args, result, token_usage, ...}`."""
    _chunks: list[str] = field(default_factory=list, repr=False)
    _final_text: str | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        if self._final_text is not None:
            return self._final_text
        return "".join(self._chunks)

    @property
    def done(self) -> bool:
        return self.status != "in_progress"

    def apply(self, event: Event) -> None:
        # Every event names its response: a stream resumed after `response.created` still has it.
        self.response_id, self.chat_id = event.response_id, event.chat_id
        if isinstance(event, OutputTextDelta):
            self._chunks.append(event.delta)
        elif isinstance(event, ReasoningStepStart):
            self.steps.append(event.step.model_dump(mode="json"))
        elif isinstance(event, ReasoningStepEnd):
            self._end_step(event)
        elif isinstance(event, ChatTitleUpdated):
            self.title = event.name
        elif isinstance(event, OutputTextCompleted):
            self._final_text = event.final_text
            self.usage = event.usage
            self.status = event.status
        elif isinstance(event, ResponseError):
            self.error = event
            self.status = "failed"

    def apply_delta(self, text: str) -> None:
        """`apply` of an `OutputTextDelta` of this response carrying `text`, without the event."""
        self._chunks.append(text)

    def _end_step(self, event: ReasoningStepEnd) -> None:
        end = event.step.model_dump(mode="json")
        for step in self.steps:
            if step["id"] == end["id"]:
                step.update(end)
                return
        self.steps.append(end)
