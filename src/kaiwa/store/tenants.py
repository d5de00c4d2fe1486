"""Workspaces as tenants: create, rename, and delete one with everything it holds.

    workspace = await create_workspace(session, "営業部")
    await contents(session, workspace.id)      # {"chats": 3, "messages": 12, …} (every table)
    deleted = await delete_workspace(session, workspace.id)
    deleted.rows                                # the same counts, of what was deleted
    deleted.storage_keys                        # the files' blobs, to delete once committed

`delete_workspace` deletes, table by table and children before parents, what the workspace
owns, in the caller's transaction: its chats with their messages, responses, attachments,
feedback and forms; its uploaded files; its knowledge bases with their documents, chunks and
index; its agents and their versions; its batches and their items; its keys, whitelist and
idempotency keys. The files' bytes are the caller's to delete, after the commit
(`kaiwa.runtime.tenants`).

`workspace_out` and `key_out` are the JSON shapes the admin API and the CLI's `--json` share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict, cast

from sqlalchemy import ColumnElement, CursorResult, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store.db import iso, new_id, now, paginate
from kaiwa.store.models import (
    Agent,
    AgentVersion,
    ApiKey,
    Base,
    Batch,
    BatchItem,
    Chat,
    Feedback,
    FormRequest,
    IdempotencyKey,
    KbChunk,
    KbDocument,
    KbTerm,
    KnowledgeBase,
    Message,
    MessageFile,
    Response,
    UploadedFile,
    WhitelistEntry,
    Workspace,
)

__all__ = [
    "Deleted",
    "KeyOut",
    "WorkspaceOut",
    "contents",
    "create_workspace",
    "delete_workspace",
    "key_out",
    "rename_workspace",
    "running_responses",
    "workspace_out",
    "workspaces_page",
]


class WorkspaceOut(TypedDict):
    id: str
    name: str
    whitelist_mode: bool
    created_at: str | None


class KeyOut(TypedDict):
    id: str
    workspace_id: str
    name: str
    prefix: str
    scope: str
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None


def workspace_out(workspace: Workspace) -> WorkspaceOut:
    return {
        "id": workspace.id,
        "name": workspace.name,
        "whitelist_mode": workspace.whitelist_mode,
        "created_at": iso(workspace.created_at),
    }


def key_out(key: ApiKey) -> KeyOut:
    """A key as listed: its prefix, never its hash (the plaintext exists only at creation)."""
    return {
        "id": key.id,
        "workspace_id": key.workspace_id,
        "name": key.name,
        "prefix": key.prefix,
        "scope": key.scope,
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at),
        "revoked_at": iso(key.revoked_at),
    }


async def create_workspace(session: AsyncSession, name: str) -> Workspace:
    workspace = Workspace(id=new_id(), name=name, whitelist_mode=False, created_at=now())
    session.add(workspace)
    await session.flush()
    return workspace


async def workspaces_page(
    session: AsyncSession, *, limit: int, offset: int
) -> tuple[list[Workspace], int]:
    """Oldest first, and how many there are."""
    query = select(Workspace).order_by(Workspace.created_at, Workspace.id)
    return await paginate(session, query, limit=limit, offset=offset)


async def rename_workspace(session: AsyncSession, workspace_id: str, name: str) -> Workspace | None:
    workspace = await session.get(Workspace, workspace_id)
    if workspace is not None:
        workspace.name = name
        await session.flush()
    return workspace


@dataclass(frozen=True, slots=True)
class Deleted:
    rows: dict[str, int]
    """Rows deleted, by table."""
    storage_keys: list[str]
    """Where the deleted files' bytes are, for the caller to delete once this commits."""


def _owned(workspace_id: str) -> list[tuple[type[Base], ColumnElement[bool]]]:
    """Every table's rows of the workspace, children before their parents."""
    chats = select(Chat.id).where(Chat.workspace_id == workspace_id)
    knowledge_bases = select(KnowledgeBase.id).where(KnowledgeBase.workspace_id == workspace_id)
    files = select(UploadedFile.uuid).where(UploadedFile.workspace_id == workspace_id)
    agents = select(Agent.id).where(Agent.workspace_id == workspace_id)
    batches = select(Batch.id).where(Batch.workspace_id == workspace_id)
    return [
        (KbTerm, KbTerm.knowledge_base_id.in_(knowledge_bases)),
        (KbChunk, KbChunk.knowledge_base_id.in_(knowledge_bases)),
        (
            KbDocument,
            or_(
                KbDocument.workspace_id == workspace_id,
                KbDocument.knowledge_base_id.in_(knowledge_bases),
            ),
        ),
        (KnowledgeBase, KnowledgeBase.workspace_id == workspace_id),
        (MessageFile, or_(MessageFile.chat_id.in_(chats), MessageFile.file_uuid.in_(files))),
        (Feedback, Feedback.chat_id.in_(chats)),
        (FormRequest, FormRequest.chat_id.in_(chats)),
        (Response, or_(Response.workspace_id == workspace_id, Response.chat_id.in_(chats))),
        (Message, Message.chat_id.in_(chats)),
        (Chat, Chat.workspace_id == workspace_id),
        (UploadedFile, UploadedFile.workspace_id == workspace_id),
        (BatchItem, BatchItem.batch_id.in_(batches)),
        (Batch, Batch.workspace_id == workspace_id),
        (AgentVersion, AgentVersion.agent_id.in_(agents)),
        (Agent, Agent.workspace_id == workspace_id),
        (ApiKey, ApiKey.workspace_id == workspace_id),
        (WhitelistEntry, WhitelistEntry.workspace_id == workspace_id),
        (IdempotencyKey, IdempotencyKey.workspace_id == workspace_id),
        (Workspace, Workspace.id == workspace_id),
    ]


async def contents(session: AsyncSession, workspace_id: str) -> dict[str, int]:
    """How many rows of each table the workspace has (what deleting it would delete)."""
    counts: dict[str, int] = {}
    for model, owned in _owned(workspace_id):
        found = await session.scalar(select(func.count()).select_from(model).where(owned))
        counts[model.__tablename__] = found or 0
    return counts


async def delete_workspace(session: AsyncSession, workspace_id: str) -> Deleted | None:
    """Delete the workspace and everything it owns; None when there is no such workspace."""
    workspace = await session.scalar(
        select(Workspace).where(Workspace.id == workspace_id).with_for_update()
    )
    if workspace is None:
        return None
    # Nothing of it may linger in the session's identity map once its rows are gone.
    session.expunge(workspace)
    rows: dict[str, int] = {}
    storage_keys: list[str] = []
    for model, owned in _owned(workspace_id):
        statement = delete(model).where(owned).execution_options(synchronize_session=False)
        if model is UploadedFile:
            # Exactly the files deleted: their bytes go next.
            keys = list(await session.scalars(statement.returning(UploadedFile.storage_key)))
            storage_keys += keys
            rows[model.__tablename__] = len(keys)
        elif model is KbDocument:
            # Documents still waiting to be indexed hold their uploaded bytes.
            held = list(await session.scalars(statement.returning(KbDocument.storage_key)))
            storage_keys += [key for key in held if key]
            rows[model.__tablename__] = len(held)
        else:
            result = cast(CursorResult[object], await session.execute(statement))
            rows[model.__tablename__] = max(result.rowcount, 0)
    return Deleted(rows=rows, storage_keys=storage_keys)


async def running_responses(session: AsyncSession, workspace_id: str) -> list[str]:
    """The ids of the workspace's answers in progress (to stop before deleting it)."""
    rows = await session.scalars(
        select(Response.id).where(
            Response.workspace_id == workspace_id, Response.status == "in_progress"
        )
    )
    return list(rows)
