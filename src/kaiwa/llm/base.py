"""The model port: what the runtime asks of any model, and what it gets back.

A model turns a `ModelRequest` into an async stream of `ModelEvent`s: text deltas, tool calls and
usage reports. Each provider module maps messages out, events in, and its errors to `ModelError`
at its edge; nothing above `llm/` sees a provider SDK.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]
Purpose = Literal["answer", "title"]


NOT_AN_OBJECT = "the arguments the model wrote are not a JSON object"
"""`ToolCall.invalid` when a provider's tool call arguments do not parse as a JSON object."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    invalid: str | None = None
    """Why the model's arguments could not be read (not a JSON object): the call's step fails
    with this reason and the answer goes on, as for any argument the model got wrong."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    """On an assistant message: the tools it asked for."""
    tool_call_id: str | None = None
    """On a tool message: the call it answers."""
    is_error: bool = False
    """On a tool message: the tool failed and `content` says why."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]
    """JSON Schema of the arguments."""


@dataclass(frozen=True, slots=True)
class ModelRequest:
    messages: Sequence[ChatMessage]
    """The conversation, oldest first, ending with the user's message."""
    system: str | None = None
    tools: Sequence[ToolSpec] = ()
    purpose: Purpose = "answer"
    """`title` asks for a short chat title in the language of the conversation."""
    max_tokens: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    """Per-agent model settings (`agent.meta.model_settings`), passed through as is."""


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one model call; a model reports it once, usually last."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


ModelEvent = TextDelta | ToolCall | Usage


class ModelError(Exception):
    """The model or its provider failed; the runtime reports it as 10009 (upstream error).

    The message is shown to users: it names the provider and what went wrong, never a secret.
    """

    def __init__(self, message: str, *, partial: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.partial = partial
        """True when some text had already streamed before the failure."""


class ChatModel(Protocol):
    """Anything that can stream an answer.

    >>> async for event in model.stream(ModelRequest(messages=[ChatMessage("user", "hi")])):
    ...     ...
    """

    @property
    def name(self) -> str:
        """`provider/model`, as reported in `response.created.model`."""
        ...

    def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        """Events of one model call. Callers close it (`contextlib.aclosing`) so that stopping
        early also closes the upstream connection at once."""
        ...
