"""Request bodies (validated on the way in) and the JSON shapes of resources (on the way out).

Lengths that are settings (name, message) are checked in the routes, where settings are known.
Every string a client sends, however deeply nested, must be text both databases can store and
the response can echo: no NUL character (PostgreSQL refuses it) and no lone surrogate (it has
no UTF-8 encoding). Free-form JSON (agent `meta`, tools, form values) nests at most
`MAX_JSON_DEPTH` levels. Lengths fixed by a column are checked here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
)
from pydantic_core import PydanticCustomError

from kaiwa.protocol.json_limits import MAX_JSON_DEPTH, too_deep
from kaiwa.store.db import iso
from kaiwa.store.feedback import FeedbackType
from kaiwa.store.models import Agent, AgentVersion, Chat, Feedback, Message, UploadedFile

J = TypeVar("J")

#: The width of the `external_user_id` and `llm_model` columns.
MAX_COLUMN_CHARS = 256


def _check_text(value: str, where: str = "") -> str:
    if "\x00" in value:
        raise PydanticCustomError(
            "text_nul", "{where}must not contain NUL characters", {"where": where}
        )
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise PydanticCustomError(
                "text_surrogate",
                "{where}must be valid Unicode text (it has a lone surrogate)",
                {"where": where},
            ) from None
    return value


def _check_json(value: J) -> J:
    """Check every string (keys too) of a JSON value; the message names the nested path."""

    def walk(item: object, path: str) -> None:
        if isinstance(item, BaseModel):
            item = item.model_dump()
        if isinstance(item, str):
            _check_text(item, f"{path}: " if path else "")
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(str(key), f"{path}: " if path else "")
                walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                walk(child, f"{path}.{index}" if path else str(index))

    walk(value, "")
    return value


def check_depth(value: J) -> J:
    """A `BeforeValidator` for free-form JSON: as it came, before anything walks it."""
    if too_deep(value):
        raise PydanticCustomError(
            "json_too_deep",
            "must nest objects and arrays at most {limit} levels deep",
            {"limit": MAX_JSON_DEPTH},
        )
    return value


Text = Annotated[StrictStr, AfterValidator(_check_text)]
"""A string that the databases can store and JSON can carry."""
ColumnText = Annotated[Text, Field(max_length=MAX_COLUMN_CHARS)]
JsonObject = Annotated[dict[str, Any], BeforeValidator(check_depth), AfterValidator(_check_json)]


def _check_agent_meta(meta: dict[str, Any]) -> dict[str, Any]:
    # The runtime hands `model_settings` to the model as keyword-like settings.
    settings = meta.get("model_settings")
    if settings is not None and not isinstance(settings, dict):
        raise PydanticCustomError("model_settings_type", "model_settings: must be an object")
    return meta


AgentMeta = Annotated[JsonObject, AfterValidator(_check_agent_meta)]


class _Body(BaseModel):
    # Unknown fields are ignored, as Codeer clients may send fields kaiwa does not know.
    model_config = ConfigDict(extra="ignore")


class CreateChat(_Body):
    name: Text = ""
    """Empty (or left out): `UNTITLED` until the first answer's title names it."""
    agent_id: UUID
    external_user_id: ColumnText | None = None


class RenameChat(_Body):
    name: Text


class ReplyOptions(_Body):
    """What every request that starts a response shares: send, regenerate, form submit."""

    stream: StrictBool = True
    external_user_id: ColumnText | None = None
    include_tool_tags: StrictBool = False
    """Put `<tool id=…>name</tool>` where each step starts, in the deltas, the final text and
    the stored answer alike."""
    on_disconnect: Literal["continue", "cancel"] = "continue"
    """[ext] `continue`: a client that goes away does not stop the answer; `cancel`: it does."""


class TurnOptions(ReplyOptions):
    """What send and regenerate share."""

    agent_id: UUID
    if_busy: Literal["reject", "interrupt"] = "reject"
    """[ext] A response already runs on the chat: answer 409, or interrupt it and start."""


class SendMessage(TurnOptions):
    message: Text
    attached_file_uuids: list[UUID] = Field(default_factory=list)


class Regenerate(TurnOptions):
    pass


class SubmitForm(ReplyOptions):
    values: JsonObject
    agent_id: UUID | None = None
    """When given, it must be the chat's agent."""


class _Tool(BaseModel):
    model_config = ConfigDict(extra="allow")


class KnowledgeBaseTool(_Tool):
    type: Literal["knowledge_base"]
    knowledge_base_ids: list[Text] = Field(default_factory=list)


class WebSearchTool(_Tool):
    type: Literal["web_search"]
    domains: list[Text] | None = None


class FetchWebContentTool(_Tool):
    type: Literal["fetch_web_content"]


class CallAgentTool(_Tool):
    type: Literal["call_agent"]
    agent_id: UUID
    invocation_instruction: Text = ""


class RequestFormTool(_Tool):
    type: Literal["request_form"]
    custom_form_schema: JsonObject


class LookupTool(_Tool):
    type: Literal["lookup"]


UnifiedTool = Annotated[
    KnowledgeBaseTool
    | WebSearchTool
    | FetchWebContentTool
    | CallAgentTool
    | RequestFormTool
    | LookupTool,
    Field(discriminator="type"),
]


class AgentFields(_Body):
    """Writable agent fields; on update every field is optional."""

    name: Text | None = None
    description: Text | None = None
    system_prompt: Text | None = None
    llm_model: ColumnText | None = None
    # Extra fields of a tool are free-form: checked as JSON, like `meta`.
    unified_tools: (
        Annotated[list[UnifiedTool], BeforeValidator(check_depth), AfterValidator(_check_json)]
        | None
    ) = None
    suggested_questions: list[Text] | None = None
    meta: AgentMeta | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the client set (a null means "leave as is")."""
        values = self.model_dump(mode="json", exclude_unset=True)
        return {name: value for name, value in values.items() if value is not None}


class CreateAgent(AgentFields):
    name: Text
    llm_model: ColumnText = "builtin/extractive"

    def changes(self) -> dict[str, Any]:
        # Defaults count on creation: an agent always has a model.
        return self.model_dump(mode="json", exclude_none=True)


def chat_out(chat: Chat) -> dict[str, Any]:
    return {
        "id": chat.id,
        "name": chat.name,
        "created_at": iso(chat.created_at),
        "updated_at": iso(chat.updated_at),
        "external_user_id": chat.external_user_id,
        "meta": {
            "external_user_id": chat.external_user_id,
            "conversation_agent_id": chat.agent_id,
        },
    }


def message_out(
    message: Message, attached_files: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A message; `attached_files` as `attached_file_out` shows them."""
    meta = message.meta or {}
    return {
        "id": message.id,
        "group_id": message.group_id,
        "role": message.role,
        "content": message.content,
        "created_at": iso(message.created_at),
        "meta": {
            "agent_profile": meta.get("agent_profile"),
            # Codeer's: kaiwa knows no end user's email and suggests no follow-up questions.
            "participant_email": meta.get("participant_email"),
            "reasoning_steps": meta.get("reasoning_steps"),
            "token_usage": meta.get("token_usage"),
            "related_questions": meta.get("related_questions"),
            "current_step_index": meta.get("current_step_index"),
            "response_time_ms": meta.get("response_time_ms"),
            "status": message.status,
            "response_id": message.response_id,
            "superseded": bool(meta.get("superseded")),
            # [ext] On an answer that asked for a form: the form and whether it was answered.
            "form_request": meta.get("form_request"),
        },
        "attached_files": attached_files or [],
    }


def agent_out(agent: Agent, version: AgentVersion | None = None) -> dict[str, Any]:
    """An agent as the API shows it: the published snapshot when `version` is given."""
    fields = (
        version.snapshot
        if version is not None
        else {
            "name": agent.name,
            "description": agent.description,
            "system_prompt": agent.system_prompt,
            "llm_model": agent.llm_model,
            "unified_tools": agent.unified_tools,
            "suggested_questions": agent.suggested_questions,
            "meta": agent.meta,
        }
    )
    tools = fields.get("unified_tools") or []
    return {
        "id": agent.id,
        "workspace_id": agent.workspace_id,
        **fields,
        "publish_state": "public" if agent.published_version is not None else "private",
        "agent_type": "basic",
        "use_search": any(tool.get("type") == "web_search" for tool in tools),
        "version": agent.published_version,
        "published_version": agent.published_version,
        "created_at": iso(agent.created_at),
        "updated_at": iso(agent.updated_at),
    }


#: The longest feedback text.
MAX_FEEDBACK_CHARS = 4_000


def _check_feedback_content(value: str) -> str:
    # Field(max_length=…) after a validator reports "items", not characters.
    if len(value) > MAX_FEEDBACK_CHARS:
        raise PydanticCustomError(
            "text_too_long",
            "must be at most {limit} characters, got {length}",
            {"limit": MAX_FEEDBACK_CHARS, "length": len(value)},
        )
    return value


class GiveFeedback(_Body):
    type: FeedbackType
    # A null content is the same as none at all.
    content: Annotated[Text, AfterValidator(_check_feedback_content)] | None = None
    external_user_id: ColumnText | None = None


def feedback_out(feedback: Feedback) -> dict[str, Any]:
    return {
        "id": feedback.id,
        "chat_id": feedback.chat_id,
        "message_id": feedback.message_id,
        "type": feedback.type,
        "content": feedback.content,
        "external_user_id": feedback.end_user or None,
        "created_at": iso(feedback.created_at),
        "updated_at": iso(feedback.updated_at),
    }


class UploadOptions(_Body):
    """The `data` part of an upload: a JSON string."""

    scope: Literal["persistent", "ephemeral"] = "persistent"
    """`ephemeral` files expire (`ephemeral_file_ttl`) unless a message has them attached."""


def uploaded_file_out(
    file: UploadedFile, url: str, *, expires_at: datetime | None = None
) -> dict[str, Any]:
    """What `POST /chats/upload-file` answers; the last three keys are [ext]."""
    return {
        "uuid": file.uuid,
        "original_name": file.original_name,
        "content_type": file.content_type,
        "size": file.size,
        "file_url": url,
        "scope": file.scope,
        "created_at": iso(file.created_at),
        "expires_at": iso(expires_at),
        "extraction_error": file.error,
    }


def attached_file_out(file: UploadedFile, url: str) -> dict[str, Any]:
    """A message's attachment: the upload's own keys, and those Codeer's message objects use
    (`id`, `type`, `name`, `url`, `attachment_type`)."""
    return {
        "uuid": file.uuid,
        "original_name": file.original_name,
        "content_type": file.content_type,
        "size": file.size,
        "file_url": url,
        "scope": file.scope,
        "id": file.uuid,
        "type": file.content_type,
        "name": file.original_name,
        "url": url,
        "attachment_type": "file",
    }


#: The width of a knowledge-base document's `title` column.
MAX_TITLE_CHARS = 512


class KnowledgeBaseFields(_Body):
    """[ext] Writable knowledge-base fields; on update every field is optional."""

    name: Text | None = None
    description: Text | None = None

    def changes(self) -> dict[str, Any]:
        values = self.model_dump(exclude_unset=True)
        return {name: value for name, value in values.items() if value is not None}


class CreateKnowledgeBase(KnowledgeBaseFields):
    name: Text
    description: Text = ""


class TextDocument(_Body):
    """[ext] A knowledge-base document sent as text (a file is sent as multipart instead)."""

    text: Text
    title: Annotated[Text, Field(max_length=MAX_TITLE_CHARS)] | None = None
    """None: the first line of the text."""


class SearchKnowledge(_Body):
    query: Text
    top_k: Annotated[int, Field(strict=True, ge=1, le=50)] = 5
