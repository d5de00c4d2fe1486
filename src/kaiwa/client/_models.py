"""What the API returns, as small pydantic models; unknown fields from newer servers are kept.

chat = client.chats.create(name="support", agent_id=AGENT)      # Chat
page = client.messages.list(chat.id, limit=20)                  # Page[Message]
for message in page.items:
    print(message.role, message.content, message.meta.status)
page.has_next                                                   # more after this page?
form = FormRequest.from_state(stream.state)                     # the form a paused answer awaits
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from kaiwa.client._exceptions import KaiwaError
from kaiwa.protocol import Pagination, ResponseState, TokenUsage
from kaiwa.protocol.events import ResponseStatus as Status

T = TypeVar("T")

Role = Literal["user", "assistant", "system"]
FeedbackType = Literal["sys_helpful", "sys_improve"]
FieldType = Literal["shortText", "longText", "number", "dropdown", "radio", "checkbox", "date"]
FileScope = Literal["persistent", "ephemeral"]
"""`ephemeral` files expire after a while unless a message has them attached."""
DocumentStatus = Literal["processing", "ready", "failed"]
JsonObject = dict[str, JsonValue]

FORM_STEP = "consultant_request_form"


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


class AttachedFile(_Model):
    """A file attached to a message. kaiwa sends the upload's keys; other servers may send only
    some of them (or Codeer's `id`, `name`, `url`), so none is required."""

    uuid: str | None = None
    original_name: str | None = None
    content_type: str | None = None
    size: int | None = None
    file_url: str | None = None
    scope: FileScope | None = None


class Message(_Model):
    id: int
    group_id: str
    role: Role
    content: str
    created_at: datetime
    meta: MessageMeta = Field(default_factory=MessageMeta)
    attached_files: list[AttachedFile] = Field(default_factory=list)


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


class FormOption(_Model):
    value: str
    """What to submit."""
    label: str
    """What to show."""


class FormField(_Model):
    name: str
    """The key of its value in `forms.submit(..., values)`."""
    label: str
    type: FieldType
    """`number` takes a number, `date` a `YYYY-MM-DD` string, `checkbox` a list of option
    values, `dropdown` and `radio` one option value, the texts a string."""
    required: bool = False
    options: list[FormOption] = Field(default_factory=list)
    """The choices of `dropdown`, `radio` and `checkbox`."""
    question: str | None = None
    """[ext] A longer prompt than the label, when the schema has one."""


class FormRequest(_Model):
    """The form a paused answer waits for (its `completed` event has `status: "awaiting_form"`).

    Read it from the stream (`stream.form_request()`) or from any `ResponseState`, then answer
    it with `client.forms.submit(chat_id, form.id, values)` or `client.forms.stream(...)`.
    """

    id: str
    """The `form_request_id` to submit to."""
    fields: list[FormField]
    title: str | None = None
    step_id: str | None = None
    """The reasoning step that asked; the continuation starts by ending it."""

    @classmethod
    def from_state(cls, state: ResponseState) -> FormRequest | None:
        """The form the answer ended waiting for, or None (not ended, or ended otherwise).

        Raises `KaiwaError` if the form step's arguments are not a form this client can read.
        """
        if state.status != "awaiting_form":
            return None
        for step in reversed(state.steps):
            if step.get("type") == FORM_STEP and "result" not in step:
                args = step.get("args") or {}
                try:
                    return cls.model_validate(
                        {
                            "id": args.get("form_request_id"),
                            "fields": args.get("fields") or [],
                            "title": args.get("title") or None,
                            "step_id": step.get("id"),
                        }
                    )
                except ValidationError as exc:
                    message = f"Unreadable form request in step {step.get('id')}: {exc}"
                    raise KaiwaError(message) from exc
        return None


class UploadedFile(_Model):
    """A file uploaded for chats: attach it by `uuid` (`attached_file_uuids=`)."""

    uuid: str
    original_name: str
    content_type: str
    size: int
    file_url: str
    """Where to download it (with the same API key): `client.files.download(uuid)`."""
    scope: FileScope = "persistent"
    created_at: datetime | None = None
    expires_at: datetime | None = None
    """[ext] When an `ephemeral` file goes if no message has it attached."""
    extraction_error: str | None = None
    """[ext] Why no text could be read from it (the `lookup` tool then cannot search it)."""


class KnowledgeBase(_Model):
    """[ext] A set of documents that `knowledge_base` tools search."""

    id: str
    name: str
    description: str = ""
    document_count: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Document(_Model):
    """[ext] One document of a knowledge base; searchable once `status` is `ready`."""

    id: str
    knowledge_base_id: str
    title: str
    source: str = ""
    """The uploaded file's name; empty for a document sent as text."""
    content_type: str | None = None
    size: int | None = None
    status: DocumentStatus
    error: str | None = None
    """Why indexing failed (status `failed`)."""
    chunk_count: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


class SearchHit(_Model):
    """[ext] One passage found by `knowledge_bases.search`, best first."""

    document_id: str
    title: str
    chunk_id: int
    snippet: str
    score: float
    """In (0, 1]: higher is better."""


BatchStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
BatchItemStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
WebhookEvent = Literal["completed", "failed", "cancelled"]


class BatchWebhookInfo(_Model):
    """Where a batch reports its end; the secret is never shown back."""

    url: str
    events: list[WebhookEvent] = Field(default_factory=list)


class Batch(_Model):
    """Messages answered in the background (`client.batches`); see `ended` before reading
    the results as final."""

    id: str
    status: BatchStatus
    agent_id: str | None = None
    """The default agent of its requests."""
    total_requests: int = 0
    completed_requests: int = 0
    failed_requests: int = 0
    cancelled_requests: int = 0
    """[ext]"""
    webhook: BatchWebhookInfo | None = None
    webhook_delivered_at: datetime | None = None
    """[ext] When a receiver accepted the webhook (a 2xx answer)."""
    webhook_error: str | None = None
    """[ext] Why the webhook was given up, after its retries."""
    webhook_attempts: int = 0
    """[ext] Deliveries of the webhook tried so far."""
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None

    @property
    def ended(self) -> bool:
        """Over, with every request's outcome final (a cancelled batch's running requests have
        stopped)."""
        settled = self.completed_requests + self.failed_requests + self.cancelled_requests
        return (
            self.status in ("completed", "failed", "cancelled") and settled >= self.total_requests
        )


class BatchItemResult(_Model):
    """The outcome of one request of a batch, in the order the requests were given."""

    custom_id: str
    status: BatchItemStatus
    chat_id: int | None = None
    """The chat it was answered in (created for it, or its `history_id`)."""
    response_id: str | None = None
    """[ext] Its response: `client.responses.stream(chat_id, response_id)` replays it."""
    response: str | None = None
    """The answer's final text (the partial text of a cancelled one)."""
    error: ResponseFailure | None = None
    usage: TokenUsage | None = None
    agent_id: str | None = None
    started_at: datetime | None = None
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
