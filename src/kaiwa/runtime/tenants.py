"""Deleting a workspace whole: its rows in one transaction, then its files' bytes.

    deleted = await delete_workspace(sessions, blobs, workspace_id)   # None: no such workspace
    deleted.rows          # {"chats": 3, "messages": 12, "uploaded_files": 2, …}

The one place the CLI (`kaiwa workspaces delete`) and the admin API delete a workspace. Rows go
first and bytes after the commit, as for expired files: a crash in between leaves stray bytes,
never a file row whose bytes are gone. A blob that cannot be deleted is logged and skipped.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.files.storage import BlobStore
from kaiwa.runtime.deletion import delete_blobs
from kaiwa.store import tenants
from kaiwa.store.db import transaction
from kaiwa.store.tenants import Deleted

__all__ = ["delete_workspace"]

logger = logging.getLogger(__name__)


async def delete_workspace(
    sessions: async_sessionmaker[AsyncSession], blobs: BlobStore, workspace_id: str
) -> Deleted | None:
    """Delete the workspace with everything it holds, rows and blobs; None when unknown."""
    async with transaction(sessions) as session:
        deleted = await tenants.delete_workspace(session, workspace_id)
    if deleted is None:
        return None
    await delete_blobs(blobs, deleted.storage_keys, f"workspace {workspace_id}")
    logger.info("workspace %s deleted: %s", workspace_id, deleted.rows)
    return deleted
