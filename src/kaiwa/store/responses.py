"""Response records: one run of the agent that fills one assistant message."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store.db import now
from kaiwa.store.models import Message, Response


async def get_response(
    session: AsyncSession, workspace_id: str, chat_id: int, response_id: str
) -> Response | None:
    """The response, if it belongs to that chat of that workspace."""
    response = await session.get(Response, response_id)
    if response is None or response.workspace_id != workspace_id or response.chat_id != chat_id:
        return None
    return response


async def running_on_chat(session: AsyncSession, chat_id: int) -> Response | None:
    return await session.scalar(
        select(Response)
        .where(Response.chat_id == chat_id, Response.status == "in_progress")
        .limit(1)
    )


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
