"""Uploaded files and their attachment to messages.

A file belongs to a workspace; attaching it to a user message links the two (`MessageFile`, in the
order attached). An ephemeral file that no message links expires; `delete_expired` removes its row
and hands back the storage keys whose bytes the caller then deletes.

On PostgreSQL, attaching reads the files `FOR SHARE` and expiry takes them `FOR UPDATE SKIP
LOCKED`: a file being attached is never expired under the turn that attaches it, and a file being
expired is no longer found by a turn that comes after.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.store.db import now
from kaiwa.store.models import Chat, MessageFile, UploadedFile

__all__ = [
    "Scope",
    "add_file",
    "chat_files",
    "check_attachable",
    "delete_expired",
    "files_in_chat_workspace",
    "files_of_messages",
    "get_file",
    "link",
]

Scope = Literal["persistent", "ephemeral"]


def add_file(
    session: AsyncSession,
    *,
    workspace_id: str,
    original_name: str,
    content_type: str,
    size: int,
    sha256: str,
    scope: Scope,
    storage_key: str,
    text: str | None,
    error: str | None,
) -> UploadedFile:
    file = UploadedFile(
        uuid=str(uuidlib.uuid4()),
        workspace_id=workspace_id,
        original_name=original_name,
        content_type=content_type,
        size=size,
        sha256=sha256,
        scope=scope,
        storage_key=storage_key,
        text=text,
        error=error,
        created_at=now(),
    )
    session.add(file)
    return file


def _normal(value: str) -> str | None:
    try:
        return str(uuidlib.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


async def get_file(session: AsyncSession, workspace_id: str, file_uuid: str) -> UploadedFile | None:
    """The file, if it is in this workspace (a malformed uuid is simply not found)."""
    key = _normal(file_uuid)
    if key is None:
        return None
    file = await session.get(UploadedFile, key)
    if file is None or file.workspace_id != workspace_id:
        return None
    return file


async def check_attachable(
    session: AsyncSession, workspace_id: str, uuids: Sequence[str]
) -> list[UploadedFile]:
    """The files to attach, in the order given.

    Raises 400/10006 for a malformed or repeated uuid, and 404/10003 `File <uuid> not found` for
    one that is unknown or in another workspace (whose existence never leaks).
    """
    keys: list[str] = []
    for value in uuids:
        key = _normal(value)
        if key is None:
            raise ApiError(
                ErrorCode.BAD_REQUEST, f"attached_file_uuids: {value!r} is not a valid UUID"
            )
        if key in keys:
            raise ApiError(
                ErrorCode.BAD_REQUEST, f"attached_file_uuids: file {value} is attached twice"
            )
        keys.append(key)
    if not keys:
        return []
    rows = await session.scalars(
        select(UploadedFile)
        .where(UploadedFile.uuid.in_(keys), UploadedFile.workspace_id == workspace_id)
        .with_for_update(read=True)
    )
    found = {file.uuid: file for file in rows}
    for value, key in zip(uuids, keys, strict=True):
        if key not in found:
            raise ApiError(ErrorCode.NOT_FOUND, f"File {value} not found")
    return [found[key] for key in keys]


def link(
    session: AsyncSession, *, chat_id: int, message_id: int, files: Sequence[UploadedFile]
) -> None:
    """Attach `files` (from `check_attachable`) to a stored message, in their order."""
    session.add_all(
        MessageFile(message_id=message_id, file_uuid=file.uuid, chat_id=chat_id, position=index)
        for index, file in enumerate(files)
    )


async def files_of_messages(
    session: AsyncSession, message_ids: Sequence[int]
) -> dict[int, list[UploadedFile]]:
    """Each message's attached files in attachment order (an empty list when none); one query."""
    attached: dict[int, list[UploadedFile]] = {message_id: [] for message_id in message_ids}
    if not attached:
        return attached
    rows = await session.execute(
        select(MessageFile.message_id, UploadedFile)
        .join(UploadedFile, UploadedFile.uuid == MessageFile.file_uuid)
        .where(MessageFile.message_id.in_(list(attached)))
        .order_by(MessageFile.message_id, MessageFile.position)
    )
    for message_id, file in rows:
        attached[message_id].append(file)
    return attached


async def chat_files(
    session: AsyncSession, chat_id: int, *, before_message_id: int | None = None
) -> list[UploadedFile]:
    """Every file attached in the chat (to messages before `before_message_id`, if given), once
    each, in the order they were first attached."""
    query = (
        select(UploadedFile)
        .join(MessageFile, MessageFile.file_uuid == UploadedFile.uuid)
        .where(MessageFile.chat_id == chat_id)
        .order_by(MessageFile.message_id, MessageFile.position)
    )
    if before_message_id is not None:
        query = query.where(MessageFile.message_id < before_message_id)
    return list(dict.fromkeys(await session.scalars(query)))


async def files_in_chat_workspace(
    session: AsyncSession, chat_id: int, uuids: Sequence[str]
) -> list[UploadedFile]:
    """The files of `uuids` that belong to the chat's workspace, in the order given."""
    keys = [key for key in map(_normal, uuids) if key is not None]
    if not keys:
        return []
    rows = await session.scalars(
        select(UploadedFile)
        .join(Chat, Chat.workspace_id == UploadedFile.workspace_id)
        .where(Chat.id == chat_id, UploadedFile.uuid.in_(keys))
    )
    found = {file.uuid: file for file in rows}
    return [found[key] for key in dict.fromkeys(keys) if key in found]


async def delete_expired(
    session: AsyncSession, *, uploaded_before: datetime, limit: int = 500
) -> list[str]:
    """Delete up to `limit` ephemeral files uploaded before the cutoff and attached nowhere;
    the storage keys of their bytes, for the caller to delete once this commits."""
    attached = exists().where(MessageFile.file_uuid == UploadedFile.uuid)
    expired = list(
        await session.scalars(
            select(UploadedFile.uuid)
            .where(
                UploadedFile.scope == "ephemeral",
                UploadedFile.created_at < uploaded_before,
                ~attached,
            )
            .order_by(UploadedFile.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not expired:
        return []
    # Only what was deleted, so that no attached file ever loses its bytes.
    deleted = await session.scalars(
        delete(UploadedFile)
        .where(UploadedFile.uuid.in_(expired), ~attached)
        .returning(UploadedFile.storage_key)
        .execution_options(synchronize_session=False)
    )
    return list(deleted)
