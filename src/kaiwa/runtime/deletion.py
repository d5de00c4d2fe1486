"""Deleting a chat: its answers stopped, its rows in one transaction, then its files' bytes.

    deleted = await delete_chat(runtime, sessions, blobs, workspace_id, chat_id)  # None: unknown

Also the two steps it shares with deleting a workspace (`kaiwa.runtime.tenants`, the admin
API): stopping answers in progress (`stop_answers`) and deleting bytes once the rows are gone
(`delete_blobs`: a crash in between leaves stray bytes, never a row whose bytes are gone).

A chat is deleted only while no answer runs on it: the transaction locks the chat, as every turn
does before it starts, and finds none in progress. One that runs is stopped first, here or on
its replica; one that still runs after `ATTEMPTS` stops (its replica died and the sweep has not
ended it yet) is a conflict, to retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.files.storage import BlobStore
from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.runtime.responses import Runtime
from kaiwa.store import chats, responses
from kaiwa.store.db import transaction
from kaiwa.store.tenants import Deleted

__all__ = ["ATTEMPTS", "delete_blobs", "delete_chat", "stop_answers"]

logger = logging.getLogger(__name__)

ATTEMPTS = 3
"""Stops tried before deleting a chat gives up on an answer that keeps running."""


async def stop_answers(runtime: Runtime, response_ids: Iterable[str]) -> None:
    """Stop these answers and wait for their ends (a while, for those of other replicas)."""
    stops = (runtime.cancel(response_id, "stop") for response_id in response_ids)
    await asyncio.gather(*stops, return_exceptions=True)


async def delete_blobs(blobs: BlobStore, keys: Iterable[str], owner: str) -> None:
    """Delete bytes whose rows are gone; one that cannot be deleted is logged and skipped."""
    for key in keys:
        try:
            await blobs.delete(key)
        except (OSError, ValueError) as exc:
            logger.warning("%s: the blob %s was not deleted: %s", owner, key, exc)


async def delete_chat(
    runtime: Runtime,
    sessions: async_sessionmaker[AsyncSession],
    blobs: BlobStore,
    workspace_id: str,
    chat_id: int,
) -> Deleted | None:
    """Delete the chat of the workspace with all that is only its own; None when unknown.

    Raises `ApiError` 409/10004 when an answer on it could not be stopped.
    """
    for _ in range(ATTEMPTS):
        async with transaction(sessions) as session:
            chat = await chats.get_chat(session, workspace_id, chat_id, for_update=True)
            if chat is None:
                return None
            running = await responses.running_on_chat(session, chat_id)
            if running is None:
                deleted = await chats.delete_chat(session, chat_id)
        if running is not None:
            await stop_answers(runtime, [running])
            continue
        await delete_blobs(blobs, deleted.storage_keys, f"chat {chat_id}")
        logger.info("chat %s deleted: %s", chat_id, deleted.rows)
        return deleted
    raise ApiError(
        ErrorCode.CONFLICT,
        f"An answer is still running on chat {chat_id} and could not be stopped; retry shortly",
    )
