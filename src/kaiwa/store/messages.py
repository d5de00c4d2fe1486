"""Messages of a chat, oldest first. A turn is a user message and its answer, one `group_id`."""

from __future__ import annotations

from typing import Any, NamedTuple, cast

from sqlalchemy import Integer, Table, bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store.db import Db, now, paginate
from kaiwa.store.models import Message


class Earlier(NamedTuple):
    """An earlier message of a chat, as the model's context needs it."""

    role: str
    content: str
    status: str
    meta: dict[str, Any]


# Statements of every turn, built once.
_messages = cast(Table, Message.__table__)
_HISTORY = (
    select(Message.role, Message.content, Message.status, Message.meta)
    .where(Message.chat_id == bindparam("chat_id"))
    .order_by(Message.id.desc())
    .limit(bindparam("limit", type_=Integer))
)
_HISTORY_BEFORE = _HISTORY.where(Message.id < bindparam("before"))
_INSERT = _messages.insert().returning(_messages.c.id)
_META = select(_messages.c.meta).where(_messages.c.id == bindparam("message_id"))
_STORE_ANSWER = (
    _messages.update()
    .where(_messages.c.id == bindparam("message_id"))
    .values(
        content=bindparam("new_content", type_=_messages.c.content.type),
        status=bindparam("new_status", type_=_messages.c.status.type),
        meta=bindparam("new_meta", type_=_messages.c.meta.type),
    )
)


async def insert_message(
    session: Db,
    *,
    chat_id: int,
    group_id: str,
    role: str,
    content: str,
    status: str,
    meta: dict[str, Any],
    response_id: str | None = None,
) -> int:
    """Store a new message at once (no unit of work to flush); its id."""
    values = {
        "chat_id": chat_id,
        "group_id": group_id,
        "role": role,
        "content": content,
        "status": status,
        "meta": meta,
        "response_id": response_id,
        "created_at": now(),
    }
    return int((await session.execute(_INSERT, values)).scalar_one())


async def meta_of(session: Db, message_id: int) -> dict[str, Any] | None:
    """A message's `meta`; None if there is no such message."""
    row = (await session.execute(_META, {"message_id": message_id})).first()
    return None if row is None else dict(row.meta or {})


async def store_answer(
    session: Db, message_id: int, *, content: str, status: str, meta: dict[str, Any]
) -> None:
    """An answer's outcome: its whole text, final status and meta."""
    values = {"message_id": message_id, "new_content": content, "new_status": status}
    await session.execute(_STORE_ANSWER, values | {"new_meta": meta})


async def list_messages(
    session: AsyncSession, chat_id: int, *, limit: int, offset: int
) -> tuple[list[Message], int]:
    query = select(Message).where(Message.chat_id == chat_id).order_by(Message.id)
    return await paginate(session, query, limit=limit, offset=offset)


async def history(
    session: AsyncSession, chat_id: int, *, limit: int, before: int | None = None
) -> list[Earlier]:
    """The chat's last `limit` messages (those before message `before`, if given), oldest first:
    columns, not entities, since a turn reads up to `limit` of them."""
    query, values = _HISTORY, {"chat_id": chat_id, "limit": limit}
    if before is not None:
        query, values = _HISTORY_BEFORE, values | {"before": before}
    rows = (await session.execute(query, values)).all()
    return [
        Earlier(role, content, status, meta or {}) for role, content, status, meta in rows[::-1]
    ]


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
