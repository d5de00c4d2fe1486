"""Chats: created against an agent, listed per workspace, renamed by hand or titled once."""

from __future__ import annotations

from typing import Literal, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store.db import now, paginate
from kaiwa.store.models import Chat

_chats = cast(Table, Chat.__table__)
_TOUCH = (
    _chats.update()
    .where(_chats.c.id == bindparam("chat_id"))
    .values(updated_at=bindparam("now", type_=_chats.c.updated_at.type))
)


async def touch(session: AsyncSession, chat_id: int) -> None:
    """The chat moved on now (its `updated_at`)."""
    await session.execute(_TOUCH, {"chat_id": chat_id, "now": now()})


Order = Literal["asc", "desc"]


async def create_chat(
    session: AsyncSession,
    workspace_id: str,
    *,
    name: str,
    agent_id: str,
    external_user_id: str | None,
) -> Chat:
    stamp = now()
    chat = Chat(
        workspace_id=workspace_id,
        agent_id=agent_id,
        name=name,
        external_user_id=external_user_id,
        auto_title=True,
        created_at=stamp,
        updated_at=stamp,
    )
    session.add(chat)
    await session.flush()
    return chat


async def get_chat(session: AsyncSession, workspace_id: str, chat_id: int) -> Chat | None:
    chat = await session.get(Chat, chat_id)
    if chat is None or chat.workspace_id != workspace_id:
        return None
    return chat


async def list_chats(
    session: AsyncSession,
    workspace_id: str,
    *,
    agent_id: str | None,
    external_user_id: str | None,
    order: Order,
    limit: int,
    offset: int,
) -> tuple[list[Chat], int]:
    query = select(Chat).where(Chat.workspace_id == workspace_id)
    if agent_id is not None:
        query = query.where(Chat.agent_id == agent_id)
    if external_user_id is not None:
        query = query.where(Chat.external_user_id == external_user_id)
    if order == "asc":
        query = query.order_by(Chat.created_at, Chat.id)
    else:
        query = query.order_by(Chat.created_at.desc(), Chat.id.desc())
    return await paginate(session, query, limit=limit, offset=offset)


def rename_chat(chat: Chat, name: str) -> None:
    """A rename by hand: the chat keeps this name and is never auto-titled afterwards."""
    chat.name = name
    chat.auto_title = False
    chat.updated_at = now()


async def set_generated_title(session: AsyncSession, chat_id: int, name: str) -> bool:
    """Store a generated title unless the chat was titled or renamed meanwhile.

    The check and the write are one statement, so a concurrent rename always wins.
    """
    result = await session.execute(
        update(Chat)
        .where(Chat.id == chat_id, Chat.auto_title.is_(True))
        .values(name=name, auto_title=False, updated_at=now())
    )
    return bool(getattr(result, "rowcount", 0))
