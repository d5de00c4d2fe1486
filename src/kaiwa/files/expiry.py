"""Ephemeral files expire: `ephemeral_file_ttl` after upload, unless a message has them attached.

    removed = await sweep(sessions, blobs, ttl=86400.0)      # once

In the server, `sweep` is the `expire_files` periodic job: one replica at a time runs it, every
`sweep_interval(ttl)` seconds (`kaiwa.runtime.jobs.Periodic`).

Rows go first, in one short transaction, and bytes after it commits: a crash in between leaves
stray bytes, never a file whose bytes are gone. Replicas may sweep at once; each file is taken by
one of them (`store.files.delete_expired`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.files.storage import BlobStore
from kaiwa.store import files
from kaiwa.store.db import now as utc_now
from kaiwa.store.db import transaction

__all__ = ["sweep", "sweep_interval"]

logger = logging.getLogger(__name__)

BATCH = 500


def sweep_interval(ttl: float) -> float:
    """How often to sweep: often enough that a file outlives its time by at most half of it
    (and by five minutes at most)."""
    return min(max(ttl / 2, 0.05), 300.0)


async def sweep(
    sessions: async_sessionmaker[AsyncSession],
    blobs: BlobStore,
    *,
    ttl: float,
    now: datetime | None = None,
) -> int:
    """Delete every expired ephemeral file, rows and bytes; how many."""
    cutoff = (now or utc_now()) - timedelta(seconds=ttl)
    removed = 0
    while True:
        async with transaction(sessions) as session:
            keys = await files.delete_expired(session, uploaded_before=cutoff, limit=BATCH)
        for key in keys:
            await blobs.delete(key)
        removed += len(keys)
        if len(keys) < BATCH:
            return removed
