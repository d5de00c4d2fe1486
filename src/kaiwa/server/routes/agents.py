"""[ext] Agents: create, list, get, update, delete, publish. Management keys only."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.llm.registry import UnknownModelError
from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.runtime.tools.toolbox import ToolConfigError
from kaiwa.server.deps import (
    KeyFirstRoute,
    ManagerDep,
    ReadSessionDep,
    ServicesDep,
    SessionDep,
)
from kaiwa.server.envelope import ok
from kaiwa.server.pagination import PageDep, pagination
from kaiwa.server.routes.params import check_name
from kaiwa.server.schemas import AgentFields, CreateAgent, agent_out
from kaiwa.store import agents, knowledge
from kaiwa.store.models import Agent

router = APIRouter(prefix="/api/v1/agents", tags=["agents"], route_class=KeyFirstRoute)


def _check(fields: dict[str, Any], services: ServicesDep) -> None:
    if "name" in fields:
        check_name(fields["name"], services.settings.max_name_chars)
    if "llm_model" in fields:
        try:
            services.models.check(fields["llm_model"])
        except UnknownModelError as exc:
            raise ApiError(ErrorCode.BAD_REQUEST, f"llm_model: {exc}") from None
    if "unified_tools" in fields:
        try:
            services.toolbox.check(fields["unified_tools"])
        except ToolConfigError as exc:
            raise ApiError(ErrorCode.BAD_REQUEST, str(exc)) from None


async def _check_references(
    session: AsyncSession, workspace_id: str, fields: dict[str, Any]
) -> None:
    """The knowledge bases an agent's tools name must be the workspace's own."""
    for index, tool in enumerate(fields.get("unified_tools") or ()):
        if tool.get("type") != "knowledge_base":
            continue
        for kb_id in tool.get("knowledge_base_ids") or ():
            if await knowledge.get_knowledge_base(session, workspace_id, kb_id) is None:
                raise ApiError(
                    ErrorCode.BAD_REQUEST,
                    f"unified_tools[{index}].knowledge_base_ids: knowledge base {kb_id} not found",
                )


async def _agent(session: AsyncSession, workspace_id: str, agent_id: UUID) -> Agent:
    agent = await agents.get_agent(session, workspace_id, str(agent_id))
    if agent is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Agent {agent_id} not found")
    return agent


@router.post("")
async def create_agent(
    body: CreateAgent, caller: ManagerDep, session: SessionDep, services: ServicesDep
) -> JSONResponse:
    fields = body.changes()
    _check(fields, services)
    await _check_references(session, caller.workspace_id, fields)
    agent = await agents.create_agent(session, caller.workspace_id, **fields)
    await session.commit()
    return ok(agent_out(agent))


@router.get("")
async def list_agents(
    request: Request, caller: ManagerDep, session: ReadSessionDep, page: PageDep
) -> JSONResponse:
    rows, total = await agents.list_agents(
        session, caller.workspace_id, limit=page.limit, offset=page.offset
    )
    return ok([agent_out(agent) for agent in rows], pagination(request, page, total))


@router.get("/{agent_id}")
async def get_agent(agent_id: UUID, caller: ManagerDep, session: ReadSessionDep) -> JSONResponse:
    return ok(agent_out(await _agent(session, caller.workspace_id, agent_id)))


@router.patch("/{agent_id}")
async def update_agent(
    agent_id: UUID,
    body: AgentFields,
    caller: ManagerDep,
    session: SessionDep,
    services: ServicesDep,
) -> JSONResponse:
    agent = await _agent(session, caller.workspace_id, agent_id)
    fields = body.changes()
    _check(fields, services)
    await _check_references(session, caller.workspace_id, fields)
    agents.update_agent(agent, **fields)
    await session.commit()
    return ok(agent_out(agent))


@router.delete("/{agent_id}")
async def delete_agent(agent_id: UUID, caller: ManagerDep, session: SessionDep) -> JSONResponse:
    agent = await _agent(session, caller.workspace_id, agent_id)
    agents.delete_agent(agent)
    await session.commit()
    return ok({"id": agent.id, "deleted": True})


@router.post("/{agent_id}/publish")
async def publish_agent(agent_id: UUID, caller: ManagerDep, session: SessionDep) -> JSONResponse:
    agent = await _agent(session, caller.workspace_id, agent_id)
    version = await agents.publish(session, agent)
    await session.commit()
    return ok(agent_out(agent, version))
