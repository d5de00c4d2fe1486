"""What the API returns, as small pydantic models; unknown fields from newer servers are kept.

chat = client.chats.create(name="support", agent_id=AGENT)      # Chat
page = client.messages.list(chat.id, limit=20)                  # Page[Message]
for message in page.items:
    print(message.role, message.content, message.meta.status)
page.has_next                                                   # more after this page?
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from kaiwa.protocol import Pagination, TokenUsage
from kaiwa.protocol.events import ResponseStatus as Status

T = TypeVar("T")

Role = Literal["user", "assistant", "system"]
FeedbackType = Literal["sys_helpful", "sys_improve"]
JsonObject = dict[str, JsonValue]


class _Model(BaseModel):
    # Extensions only ever add fields: keep them, never reject them.
    model_config = ConfigDict(extra="allow")


class ChatMeta(_Model):
    external_user_id: str | None = None
    conversation_agent_id: str | None = None


class Chat(_Model):
    id: int
    name: str
    created_at: datetime
    updated_at: datetime
    external_user_id: str | None = None
    meta: ChatMeta = Field(default_factory=ChatMeta)


class MessageMeta(_Model):
    agent_profile: JsonValue = None
    reasoning_steps: list[JsonObject] | None = None
    token_usage: TokenUsage | None = None
    response_time_ms: int | None = None
    status: Status | None = None
    """[ext] `in_progress`, `completed`, `cancelled`, `failed` or `awaiting_form`."""
    response_id: str | None = None
    """[ext] The response that wrote this message (assistant messages)."""
    superseded: bool = False
    """[ext] True for an answer replaced by a regenerated one."""


class Message(_Model):
    id: int
    group_id: str
    role: Role
    content: str
    created_at: datetime
    meta: MessageMeta = Field(default_factory=MessageMeta)
    attached_files: list[JsonObject] = Field(default_factory=list)


class Agent(_Model):
    id: str
    workspace_id: str | None = None
    name: str
    description: str | None = None
    system_prompt: str | None = None
    llm_model: str | None = None
    """`provider/model`, e.g. `builtin/extractive`."""
    unified_tools: list[JsonObject] = Field(default_factory=list)
    suggested_questions: list[str] = Field(default_factory=list)
    meta: JsonObject = Field(default_factory=dict)
    publish_state: Literal["public", "private"] | None = None
    agent_type: str | None = None
    use_search: bool = False
    version: int | None = None
    """The published version shown, or None when the agent was never published."""
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Feedback(_Model):
    id: int
    chat_id: int
    message_id: int
    type: FeedbackType
    content: str = ""
    external_user_id: str | None = None
    created_at: datetime
    updated_at: datetime


class ResponseFailure(_Model):
    code: int
    message: str | None = None


class ResponseStatus(_Model):
    """[ext] One response as the status and cancel endpoints report it."""

    id: str
    chat_id: int
    status: Status
    model: str | None = None
    final_text: str = ""
    """The final text, or the text so far while it runs."""
    usage: TokenUsage | None = None
    steps: list[JsonObject] = Field(default_factory=list)
    error: ResponseFailure | None = None
    user_message_id: int | None = None
    assistant_message_id: int | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None


class Page(_Model, Generic[T]):
    """One page of a list; `iter_all()` on the same namespace walks every page."""

    items: list[T]
    pagination: Pagination | None = None

    @property
    def has_next(self) -> bool:
        # From the numbers, not `next_page`: that URL is absolute as the server saw it, which a
        # reverse proxy may have rewritten.
        p = self.pagination
        return p is not None and p.offset + p.limit < p.total_records
