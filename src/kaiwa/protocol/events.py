"""Every event a response stream carries, as typed models discriminated on `type`.

The server encodes these; the Python client decodes them; the JS client's types mirror them.
Every payload has `type` (equal to the SSE `event:` name), `response_id` and `chat_id`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

StepType = Literal[
    "consultant_search_web",
    "consultant_fetch_web_content",
    "consultant_retrieve_context_source",
    "consultant_call_agent",
    "consultant_request_form",
    "consultant_lookup",
]

ToolName = Literal[
    "search_web",
    "fetch_web_content",
    "retrieve_context_objs",
    "call_agent",
    "request_form",
    "lookup",
]

#: The bare tool name of each step type.
TOOL_NAMES: dict[str, str] = {
    "consultant_search_web": "search_web",
    "consultant_fetch_web_content": "fetch_web_content",
    "consultant_retrieve_context_source": "retrieve_context_objs",
    "consultant_call_agent": "call_agent",
    "consultant_request_form": "request_form",
    "consultant_lookup": "lookup",
}

ResponseStatus = Literal["in_progress", "completed", "cancelled", "failed", "awaiting_form"]
"""The lifecycle of one response, also the `meta.status` of its assistant message."""

CompletedStatus = Literal["completed", "cancelled", "awaiting_form"]


class _Model(BaseModel):
    # Unknown fields from newer servers are kept, never rejected: extensions only ever add fields.
    model_config = ConfigDict(extra="allow")


class TokenUsage(_Model):
    total_prompt_tokens: int = 0
    total_completion_tokens: int = 0
    total_tokens: int = 0
    total_calls: int = 0
    """How many model calls the tokens were spent in."""
    estimated: bool = Field(default=False, exclude_if=lambda estimated: not estimated)
    """[ext] Some call's tokens are an estimate (`kaiwa.runtime.usage`): it was cut off before
    its provider reported them (a stopped answer), or its provider reports none. Only sent
    when true."""

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            total_prompt_tokens=self.total_prompt_tokens + other.total_prompt_tokens,
            total_completion_tokens=self.total_completion_tokens + other.total_completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            total_calls=self.total_calls + other.total_calls,
            estimated=self.estimated or other.estimated,
        )


class StepStart(_Model):
    id: str
    type: StepType
    tool_name: ToolName
    content: str
    """A human-readable line in the user's language: what the step is doing."""
    args: dict[str, Any] = Field(default_factory=dict)
    timestamp: str
    """ISO-8601 UTC with `Z`."""


class StepResult(_Model):
    success: bool
    data: Any = None


class StepEnd(_Model):
    id: str
    """Equal to the `id` of the matching start."""
    type: StepType
    tool_name: ToolName
    result: StepResult
    timestamp: str
    token_usage: TokenUsage = Field(default_factory=TokenUsage)
    """The model calls made inside this step (zeros when none)."""


class _EventBase(_Model):
    type: str
    """Equal to the SSE `event:` name; each event narrows it to its own literal."""
    response_id: str
    chat_id: int


class ResponseCreated(_EventBase):
    type: Literal["response.created"] = "response.created"
    agent_id: str
    model: str
    conversation_group_id: str
    """The turn's group id: the `group_id` of its messages."""
    user_conversation_id: int
    """The id of the stored user message."""
    resume_token: str | None = None
    """[ext] Signed, scoped to this response: `?token=` on its events endpoint, for clients
    (like a browser's `EventSource`) that cannot send the API key."""


class ReasoningStepStart(_EventBase):
    type: Literal["response.reasoning_step.start"] = "response.reasoning_step.start"
    step: StepStart


class ReasoningStepEnd(_EventBase):
    type: Literal["response.reasoning_step.end"] = "response.reasoning_step.end"
    step: StepEnd


class OutputTextDelta(_EventBase):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    delta: str


class ChatTitleUpdated(_EventBase):
    type: Literal["response.chat.title.updated"] = "response.chat.title.updated"
    name: str


class OutputTextCompleted(_EventBase):
    type: Literal["response.output_text.completed"] = "response.output_text.completed"
    final_text: str
    """The concatenation of every delta."""
    usage: TokenUsage
    """Every model call of the response, title generation included."""
    status: CompletedStatus = "completed"


class ResponseError(_EventBase):
    type: Literal["response.error"] = "response.error"
    message: str
    code: int


Event = Annotated[
    ResponseCreated
    | ReasoningStepStart
    | ReasoningStepEnd
    | OutputTextDelta
    | ChatTitleUpdated
    | OutputTextCompleted
    | ResponseError,
    Field(discriminator="type"),
]

TERMINAL_TYPES = frozenset({"response.output_text.completed", "response.error"})
"""After one of these, only `[DONE]` follows."""

_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: str | bytes) -> Event:
    """Decode one `data:` payload into its event model.

    >>> parse_event('{"type":"response.output_text.delta",'
    ...             '"response_id":"r","chat_id":1,"delta":"は"}')
    OutputTextDelta(response_id='r', chat_id=1, type='response.output_text.delta', delta='は')
    """
    return _event_adapter.validate_json(data)
