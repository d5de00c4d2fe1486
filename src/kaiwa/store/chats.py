"""Chats: created against an agent, listed per workspace, renamed by hand or titled once, deleted
with everything that is only theirs.

    deleted = await delete_chat(session, chat.id)   # the chat locked, no answer running on it
    deleted.rows           # {"messages": 4, "responses": 2, "message_files": 1, …}
    deleted.storage_keys   # bytes of its ephemeral files, to delete once this commits

A chat owns its messages, responses, feedback, forms, attachment links and the idempotency keys
of its turns. Files belong to the workspace: a persistent one stays, an ephemeral one attached
in this chat and in no other goes with it (it would only wait for its expiry otherwise).
"""

from __future__ import annotations

from typing import Literal, NamedTuple, cast

from sqlalchemy import ColumnElement, CursorResult, Table, bindparam, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store.db import Db, now, paginate
from kaiwa.store.models import (
    Base,
    Chat,
    Feedback,
    FormRequest,
    IdempotencyKey,
    Message,
    MessageFile,
    Response,
    UploadedFile,
)
from kaiwa.store.tenants import Deleted

_chats = cast(Table, Chat.__table__)
_TOUCH = (
    _chats.update()
    .where(_chats.c.id == bindparam("chat_id"))
    .values(updated_at=bindparam("now", type_=_chats.c.updated_at.type))
)


class TurnChat(NamedTuple):
    """What a new turn reads of its chat."""

    id: int
    workspace_id: str
    agent_id: str
    external_user_id: str | None
    auto_title: bool


_FOR_TURN = (
    select(Chat.id, Chat.workspace_id, Chat.agent_id, Chat.external_user_id, Chat.auto_title)
    .where(Chat.id == bindparam("chat_id"))
    .with_for_update()
)


async def lock_for_turn(session: Db, chat_id: int) -> TurnChat | None:
    """The chat, locked for a new turn until the transaction ends (a row lock on PostgreSQL;
    on SQLite the transaction's writer lock holds the whole database)."""
    row = (await session.execute(_FOR_TURN, {"chat_id": chat_id})).first()
    return None if row is None else TurnChat(*row)


async def touch(session: Db, chat_id: int) -> None:
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


async def get_chat(
    session: AsyncSession, workspace_id: str, chat_id: int, *, for_update: bool = False
) -> Chat | None:
    """The chat, if it is in this workspace; `for_update`: locked until the transaction ends
    (no turn starts on it meanwhile: they lock it too)."""
    chat = await session.get(Chat, chat_id, with_for_update=for_update)
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


def _owned(chat_id: int) -> list[tuple[type[Base], ColumnElement[bool]]]:
    """The chat's rows in every table, children before their parents."""
    return [
        (MessageFile, MessageFile.chat_id == chat_id),
        (Feedback, Feedback.chat_id == chat_id),
        (FormRequest, FormRequest.chat_id == chat_id),
        (Response, Response.chat_id == chat_id),
        (Message, Message.chat_id == chat_id),
        # A retried request must not be answered with a turn that no longer exists.
        (IdempotencyKey, IdempotencyKey.chat_id == chat_id),
        (Chat, Chat.id == chat_id),
    ]


async def delete_chat(session: AsyncSession, chat_id: int) -> Deleted:
    """Delete the chat with all that is only its own, in the caller's transaction.

    The caller has locked the chat (`get_chat(..., for_update=True)`) and seen no answer running
    on it. The ephemeral files' bytes are the caller's to delete, after the commit.
    """
    attached = list(
        await session.scalars(
            select(MessageFile.file_uuid).where(MessageFile.chat_id == chat_id).distinct()
        )
    )
    rows: dict[str, int] = {}
    for model, owned in _owned(chat_id):
        statement = delete(model).where(owned).execution_options(synchronize_session=False)
        result = cast(CursorResult[object], await session.execute(statement))
        rows[model.__tablename__] = max(result.rowcount, 0)
    # Whatever the deletes left in the identity map is gone from the database.
    session.expunge_all()
    storage_keys = await _delete_ephemeral(session, attached)
    rows[UploadedFile.__tablename__] = len(storage_keys)
    return Deleted(rows=rows, storage_keys=storage_keys)


async def _delete_ephemeral(session: AsyncSession, uuids: list[str]) -> list[str]:
    """Delete those of the files that are ephemeral and now attached nowhere; their storage keys.

    As the expiry sweep does (`store.files.delete_expired`): a file a turn is attaching right now
    (it holds it `FOR SHARE`) is skipped and left to expire, never deleted under that turn.
    """
    if not uuids:
        return []
    elsewhere = exists().where(MessageFile.file_uuid == UploadedFile.uuid)
    free = list(
        await session.scalars(
            select(UploadedFile.uuid)
            .where(UploadedFile.uuid.in_(uuids), UploadedFile.scope == "ephemeral", ~elsewhere)
            .with_for_update(skip_locked=True)
        )
    )
    if not free:
        return []
    deleted = await session.scalars(
        delete(UploadedFile)
        .where(UploadedFile.uuid.in_(free), ~elsewhere)
        .returning(UploadedFile.storage_key)
        .execution_options(synchronize_session=False)
    )
    return list(deleted)
