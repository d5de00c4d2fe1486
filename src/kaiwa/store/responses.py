"""Response records: one run of the agent that fills one assistant message."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store.db import now
from kaiwa.store.models import Message, Response

# Statements of every turn, built once.
_responses = cast(Table, Response.__table__)
_INSERT = _responses.insert()
_RUNNING = (
    select(_responses.c.id)
    .where(_responses.c.chat_id == bindparam("chat_id"), _responses.c.status == "in_progress")
    .limit(1)
)
_FINISH = (
    _responses.update()
    .where(_responses.c.id == bindparam("response_id"))
    .values(
        status=bindparam("new_status", type_=_responses.c.status.type),
        finished_at=bindparam("new_finished_at", type_=_responses.c.finished_at.type),
        last_event_id=bindparam("new_last_event_id", type_=_responses.c.last_event_id.type),
        error_code=bindparam("new_error_code", type_=_responses.c.error_code.type),
        error_message=bindparam("new_error_message", type_=_responses.c.error_message.type),
    )
)


async def get_response(
    session: AsyncSession, workspace_id: str, chat_id: int, response_id: str
) -> Response | None:
    """The response, if it belongs to that chat of that workspace."""
    response = await session.get(Response, response_id)
    if response is None or response.workspace_id != workspace_id or response.chat_id != chat_id:
        return None
    return response


async def insert_response(
    session: AsyncSession,
    *,
    response_id: str,
    chat_id: int,
    workspace_id: str,
    agent_id: str,
    model: str,
    user_message_id: int,
    assistant_message_id: int,
) -> None:
    """Store a new response, in progress."""
    values = {
        "id": response_id,
        "chat_id": chat_id,
        "workspace_id": workspace_id,
        "agent_id": agent_id,
        "model": model,
        "user_message_id": user_message_id,
        "assistant_message_id": assistant_message_id,
        "status": "in_progress",
        "created_at": now(),
    }
    await session.execute(_INSERT, values)


async def running_on_chat(session: AsyncSession, chat_id: int) -> str | None:
    """The id of the response in progress on the chat, if any."""
    return (await session.execute(_RUNNING, {"chat_id": chat_id})).scalar()


async def finish(
    session: AsyncSession,
    response_id: str,
    *,
    status: str,
    last_event_id: int,
    error: tuple[int, str] | None,
) -> None:
    """Store a response's end."""
    code, message = error if error is not None else (None, None)
    values = {
        "response_id": response_id,
        "new_status": status,
        "new_finished_at": now(),
        "new_last_event_id": last_event_id,
        "new_error_code": code,
        "new_error_message": message,
    }
    await session.execute(_FINISH, values)


async def fail_unfinished(session: AsyncSession, *, code: int, message: str) -> list[str]:
    """Mark every response still in progress as failed (their process is gone); return their ids."""
    ids = list(await session.scalars(select(Response.id).where(Response.status == "in_progress")))
    if not ids:
        return []
    await session.execute(
        update(Response)
        .where(Response.id.in_(ids))
        .values(status="failed", error_code=code, error_message=message, finished_at=now())
    )
    await session.execute(
        update(Message)
        .where(Message.response_id.in_(ids), Message.status == "in_progress")
        .values(status="failed")
    )
    return ids
