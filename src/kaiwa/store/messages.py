"""Messages of a chat, oldest first. A turn is a user message and its answer, one `group_id`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store.db import now, paginate
from kaiwa.store.models import Message


def add_message(
    session: AsyncSession,
    *,
    chat_id: int,
    group_id: str,
    role: str,
    content: str,
    status: str,
    meta: dict[str, Any],
    response_id: str | None = None,
) -> Message:
    message = Message(
        chat_id=chat_id,
        group_id=group_id,
        role=role,
        content=content,
        status=status,
        meta=meta,
        response_id=response_id,
        created_at=now(),
    )
    session.add(message)
    return message


async def list_messages(
    session: AsyncSession, chat_id: int, *, limit: int, offset: int
) -> tuple[list[Message], int]:
    query = select(Message).where(Message.chat_id == chat_id).order_by(Message.id)
    return await paginate(session, query, limit=limit, offset=offset)


async def history(
    session: AsyncSession, chat_id: int, *, limit: int, before: int | None = None
) -> list[Message]:
    """The chat's last `limit` messages (those before message `before`, if given), oldest first."""
    query = select(Message).where(Message.chat_id == chat_id)
    if before is not None:
        query = query.where(Message.id < before)
    rows = await session.scalars(query.order_by(Message.id.desc()).limit(limit))
    return list(reversed(list(rows)))


async def last_user_message(session: AsyncSession, chat_id: int) -> Message | None:
    return await session.scalar(
        select(Message)
        .where(Message.chat_id == chat_id, Message.role == "user")
        .order_by(Message.id.desc())
        .limit(1)
    )


async def has_messages(session: AsyncSession, chat_id: int) -> bool:
    return bool(await session.scalar(select(exists().where(Message.chat_id == chat_id))))


async def answers_in_group(session: AsyncSession, chat_id: int, group_id: str) -> list[Message]:
    """The assistant messages of one turn (more than one once it has been regenerated)."""
    rows = await session.scalars(
        select(Message)
        .where(
            Message.chat_id == chat_id, Message.group_id == group_id, Message.role == "assistant"
        )
        .order_by(Message.id)
    )
    return list(rows)
