"""Workspaces and their whitelist of end users."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.store.db import new_id, now
from kaiwa.store.models import WhitelistEntry, Workspace


async def default_workspace(session: AsyncSession, *, create: bool = True) -> Workspace | None:
    """The oldest workspace; created (named "default") when there is none and `create`."""
    workspace = await session.scalar(select(Workspace).order_by(Workspace.created_at).limit(1))
    if workspace is None and create:
        workspace = Workspace(id=new_id(), name="default", whitelist_mode=False, created_at=now())
        session.add(workspace)
        await session.flush()
    return workspace


async def get_workspace(session: AsyncSession, workspace_id: str) -> Workspace | None:
    return await session.get(Workspace, workspace_id)


async def list_workspaces(session: AsyncSession) -> list[Workspace]:
    return list(await session.scalars(select(Workspace).order_by(Workspace.created_at)))


async def is_allowed(session: AsyncSession, workspace_id: str, external_user_id: str) -> bool:
    entry = await session.get(WhitelistEntry, (workspace_id, external_user_id))
    return entry is not None


async def whitelist(session: AsyncSession, workspace_id: str) -> list[str]:
    rows = await session.scalars(
        select(WhitelistEntry.external_user_id)
        .where(WhitelistEntry.workspace_id == workspace_id)
        .order_by(WhitelistEntry.external_user_id)
    )
    return list(rows)


async def allow(session: AsyncSession, workspace_id: str, external_user_id: str) -> None:
    if not await is_allowed(session, workspace_id, external_user_id):
        session.add(WhitelistEntry(workspace_id=workspace_id, external_user_id=external_user_id))


async def disallow(session: AsyncSession, workspace_id: str, external_user_id: str) -> None:
    await session.execute(
        delete(WhitelistEntry).where(
            WhitelistEntry.workspace_id == workspace_id,
            WhitelistEntry.external_user_id == external_user_id,
        )
    )


async def check_end_user(
    session: AsyncSession,
    workspace_id: str,
    external_user_id: str | None,
    *,
    whitelist_mode: bool,
    required: bool,
) -> None:
    """In whitelist mode, the end user must be given (when `required`) and on the whitelist."""
    if not whitelist_mode:
        return
    if external_user_id is None:
        if required:
            raise ApiError(
                ErrorCode.CLIENT_USER_NOT_ALLOWED,
                "external_user_id is required: this workspace only serves whitelisted users",
            )
        return
    if not await is_allowed(session, workspace_id, external_user_id):
        raise ApiError(
            ErrorCode.CLIENT_USER_NOT_ALLOWED,
            f"External user {external_user_id!r} is not on this workspace's whitelist",
        )
