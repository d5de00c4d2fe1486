"""Chats: published agents, create, list, rename, delete."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from kaiwa.files.storage import BlobStore
from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.runtime.deletion import delete_chat as delete_everything
from kaiwa.server.deps import (
    CallerDep,
    KeyFirstRoute,
    ReadSessionDep,
    ServicesDep,
    SessionDep,
    check_end_user,
)
from kaiwa.server.envelope import ok
from kaiwa.server.pagination import PageDep, pagination
from kaiwa.server.routes.params import ChatId, check_name
from kaiwa.server.schemas import CreateChat, RenameChat, Text, agent_out, chat_out
from kaiwa.store import agents, chats

UNTITLED = "Untitled"
"""The name of a chat created without one (as Codeer does), until its title is generated."""

router = APIRouter(prefix="/api/v1/chats", tags=["chats"], route_class=KeyFirstRoute)

OrderBy = Literal["created_at", "-created_at", "asc", "ascending", "desc", "descending"]


@router.get("/published-agents")
async def published_agents(caller: CallerDep, session: ReadSessionDep) -> JSONResponse:
    published = await agents.list_published(session, caller.workspace_id)
    data = [agent_out(agent, await agents.published_version(session, agent)) for agent in published]
    return ok(data)


@router.post("")
async def create_chat(
    body: CreateChat, caller: CallerDep, session: SessionDep, services: ServicesDep
) -> JSONResponse:
    name = body.name.strip() and body.name
    if name:
        check_name(name, services.settings.max_name_chars)
    await check_end_user(session, caller, body.external_user_id, required=True)
    agent = await agents.get_agent(session, caller.workspace_id, str(body.agent_id))
    if agent is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Agent {body.agent_id} not found")
    chat = await chats.create_chat(
        session,
        caller.workspace_id,
        name=name or UNTITLED,
        agent_id=agent.id,
        external_user_id=body.external_user_id,
    )
    await session.commit()
    return ok(chat_out(chat))


@router.get("")
async def list_chats(
    request: Request,
    caller: CallerDep,
    session: ReadSessionDep,
    page: PageDep,
    agent_id: Annotated[UUID | None, Query()] = None,
    external_user_id: Annotated[Text | None, Query()] = None,
    order_by: Annotated[OrderBy, Query()] = "-created_at",
) -> JSONResponse:
    await check_end_user(session, caller, external_user_id, required=False)
    rows, total = await chats.list_chats(
        session,
        caller.workspace_id,
        agent_id=str(agent_id) if agent_id is not None else None,
        external_user_id=external_user_id,
        order="asc" if order_by in ("created_at", "asc", "ascending") else "desc",
        limit=page.limit,
        offset=page.offset,
    )
    return ok([chat_out(chat) for chat in rows], pagination(request, page, total))


@router.put("/{chat_id}")
async def rename_chat(
    chat_id: ChatId,
    body: RenameChat,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
) -> JSONResponse:
    check_name(body.name, services.settings.max_name_chars)
    chat = await chats.get_chat(session, caller.workspace_id, chat_id)
    if chat is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Chat {chat_id} not found")
    await check_end_user(session, caller, chat.external_user_id, required=False)
    chats.rename_chat(chat, body.name)
    await session.commit()
    return ok(chat_out(chat))


@router.delete("/{chat_id}")
async def delete_chat(
    chat_id: ChatId,
    request: Request,
    caller: CallerDep,
    session: ReadSessionDep,
    services: ServicesDep,
) -> JSONResponse:
    """[ext] The chat and all that is only its own; an answer running on it is stopped first.

    Whoever may rename the chat may delete it (any key of its workspace; in whitelist mode only
    while its end user is on the list). A second delete is 404.
    """
    chat = await chats.get_chat(session, caller.workspace_id, chat_id)
    if chat is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Chat {chat_id} not found")
    await check_end_user(session, caller, chat.external_user_id, required=False)
    # Nothing is held open across the stop and the delete, which take their own transactions.
    await session.commit()
    blobs: BlobStore = request.app.state.files
    deleted = await delete_everything(
        services.runtime, request.app.state.sessions, blobs, caller.workspace_id, chat_id
    )
    if deleted is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Chat {chat_id} not found")
    return ok({"id": chat_id, "deleted": True})
