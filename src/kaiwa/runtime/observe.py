"""What the runtime tells whoever watches it — metrics, traces — about each answer it produces:
when it started and was announced, its first token, each model call and tool step, its end.

    observer = Observers(metrics, tracing)          # or NO_OBSERVER (the default)
    watch = observer.answer(AnswerInfo(...))        # when the answer is stored
    watch.created()                                 # `response.created` is in its log
    with watch.model_call("openai", "gpt-4o") as call:
        ...; call.first_token(); ...; call.usage(prompt_tokens=12, completion_tokens=40)
    with watch.tool_step("consultant_search_web", "search_web") as step:
        ...; step.ended(success=True)
    watch.finished("completed", None, usage)        # once, whatever happened

Every method is called on the event loop, never per delta (only `first_token`, once per model
call that streams text), and must not raise or block: an observer records, it never decides.
A model call or a step that raises ends its `with` block with the exception, for the observer
to see; a step that pauses the turn (a form) ends its block without `ended`; `finished` always
comes last.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from kaiwa.protocol import ResponseState, TokenUsage

__all__ = [
    "NO_OBSERVER",
    "NO_WATCH",
    "AnswerInfo",
    "AnswerWatch",
    "CallWatch",
    "Observer",
    "Observers",
    "StepWatch",
]


@dataclass(frozen=True, slots=True)
class AnswerInfo:
    response_id: str
    chat_id: int
    workspace_id: str
    agent_id: str
    llm_model: str
    """`provider/model`, as the agent names it."""
    continued: bool = False
    """It goes on with a turn that paused on a form."""
    message: str = field(default="", repr=False)
    """The user's message (for traces that are allowed to record it: `trace_message_text`)."""
    state: ResponseState | None = field(default=None, repr=False)
    """What the answer has produced so far: its text once `finished` is called."""


class CallWatch(Protocol):
    def first_token(self) -> None:
        """The call's first text arrived (called at most once per call)."""

    def usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        """The tokens the model reported for this call."""


class StepWatch(Protocol):
    def ended(self, success: bool) -> None:
        """The step's end: its tool succeeded or failed (a raised exception also ends it)."""


class AnswerWatch(Protocol):
    def created(self) -> None:
        """`response.created` is in the log: readers see the answer from now on."""

    def model_call(self, provider: str, model: str) -> AbstractContextManager[CallWatch]:
        """One streamed model call (the title's too), for the length of the `with` block."""

    def tool_step(self, step_type: str, tool_name: str) -> AbstractContextManager[StepWatch]:
        """One reasoning step, for the length of the `with` block."""

    def finished(self, status: str, error_code: int | None, usage: TokenUsage) -> None:
        """The answer ended: `completed`, `failed`, `cancelled` or `awaiting_form`."""


class Observer(Protocol):
    def answer(self, info: AnswerInfo) -> AnswerWatch:
        """A new answer, stored and about to be announced."""


class _Nothing:
    """Watches nothing: the default, and what a part of the runtime gets without an answer."""

    def first_token(self) -> None:
        pass

    def usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        pass

    def ended(self, success: bool) -> None:
        pass

    def created(self) -> None:
        pass

    @contextmanager
    def model_call(self, provider: str, model: str) -> Iterator[CallWatch]:
        yield self

    @contextmanager
    def tool_step(self, step_type: str, tool_name: str) -> Iterator[StepWatch]:
        yield self

    def finished(self, status: str, error_code: int | None, usage: TokenUsage) -> None:
        pass

    def answer(self, info: AnswerInfo) -> AnswerWatch:
        return self


NO_WATCH: AnswerWatch = _Nothing()
NO_OBSERVER: Observer = _Nothing()


class Observers:
    """Several observers as one (metrics and traces); with none, use `NO_OBSERVER`."""

    def __init__(self, *observers: Observer) -> None:
        self._observers = observers

    def answer(self, info: AnswerInfo) -> AnswerWatch:
        watches = [observer.answer(info) for observer in self._observers]
        # One alone is its own watch: no `ExitStack` per model call for an open stream to hold.
        return watches[0] if len(watches) == 1 else _Watches(watches)


class _Watches:
    def __init__(self, watches: Sequence[AnswerWatch]) -> None:
        self._watches = watches

    def created(self) -> None:
        for watch in self._watches:
            watch.created()

    @contextmanager
    def model_call(self, provider: str, model: str) -> Iterator[CallWatch]:
        with ExitStack() as stack:
            calls = [stack.enter_context(w.model_call(provider, model)) for w in self._watches]
            yield _Calls(calls)

    @contextmanager
    def tool_step(self, step_type: str, tool_name: str) -> Iterator[StepWatch]:
        with ExitStack() as stack:
            steps = [stack.enter_context(w.tool_step(step_type, tool_name)) for w in self._watches]
            yield _Steps(steps)

    def finished(self, status: str, error_code: int | None, usage: TokenUsage) -> None:
        for watch in self._watches:
            watch.finished(status, error_code, usage)


class _Calls:
    def __init__(self, calls: Sequence[CallWatch]) -> None:
        self._calls = calls

    def first_token(self) -> None:
        for call in self._calls:
            call.first_token()

    def usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        for call in self._calls:
            call.usage(prompt_tokens, completion_tokens)


class _Steps:
    def __init__(self, steps: Sequence[StepWatch]) -> None:
        self._steps = steps

    def ended(self, success: bool) -> None:
        for step in self._steps:
            step.ended(success)
