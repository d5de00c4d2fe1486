"""Request bodies (validated on the way in) and the JSON shapes of resources (on the way out).

Lengths that are settings (name, message) are checked in the routes, where settings are known.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from kaiwa.store.db import iso
from kaiwa.store.models import Agent, AgentVersion, Chat, Message


class _Body(BaseModel):
    # Unknown fields are ignored, as Codeer clients may send fields kaiwa does not know.
    model_config = ConfigDict(extra="ignore")


class CreateChat(_Body):
    name: StrictStr
    agent_id: UUID
    external_user_id: StrictStr | None = None


class RenameChat(_Body):
    name: StrictStr


class SendMessage(_Body):
    message: StrictStr
    agent_id: UUID
    stream: StrictBool = True
    external_user_id: StrictStr | None = None
    attached_file_uuids: list[UUID] = Field(default_factory=list)
    include_tool_tags: StrictBool = False


class _Tool(BaseModel):
    model_config = ConfigDict(extra="allow")


class KnowledgeBaseTool(_Tool):
    type: Literal["knowledge_base"]
    knowledge_base_ids: list[StrictStr] = Field(default_factory=list)


class WebSearchTool(_Tool):
    type: Literal["web_search"]
    domains: list[StrictStr] | None = None


class FetchWebContentTool(_Tool):
    type: Literal["fetch_web_content"]


class CallAgentTool(_Tool):
    type: Literal["call_agent"]
    agent_id: UUID
    invocation_instruction: StrictStr = ""


class RequestFormTool(_Tool):
    type: Literal["request_form"]
    custom_form_schema: dict[str, Any]


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

    name: StrictStr | None = None
    description: StrictStr | None = None
    system_prompt: StrictStr | None = None
    llm_model: StrictStr | None = None
    unified_tools: list[UnifiedTool] | None = None
    suggested_questions: list[StrictStr] | None = None
    meta: dict[str, Any] | None = None

    def changes(self) -> dict[str, Any]:
        values = self.model_dump(mode="json", exclude_unset=True)
        return {name: value for name, value in values.items() if value is not None}


class CreateAgent(AgentFields):
    name: StrictStr
    llm_model: StrictStr = "builtin/extractive"


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


def message_out(message: Message) -> dict[str, Any]:
    meta = message.meta or {}
    return {
        "id": message.id,
        "group_id": message.group_id,
        "role": message.role,
        "content": message.content,
        "created_at": iso(message.created_at),
        "meta": {
            "agent_profile": meta.get("agent_profile"),
            "reasoning_steps": meta.get("reasoning_steps"),
            "token_usage": meta.get("token_usage"),
            "response_time_ms": meta.get("response_time_ms"),
            "status": message.status,
            "response_id": message.response_id,
        },
        "attached_files": meta.get("attached_files", []),
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
