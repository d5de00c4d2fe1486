"""Checkpoints: the text of a running answer, stored every few seconds.

If the process dies mid-answer, the message keeps what had been streamed up to the last
checkpoint (start-up recovery marks it failed). Each checkpoint is its own short transaction.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.protocol import ResponseState
from kaiwa.store.db import transaction
from kaiwa.store.models import Message

logger = logging.getLogger(__name__)


async def checkpoint_text(
    sessions: async_sessionmaker[AsyncSession],
    message_id: int,
    state: ResponseState,
    interval: float,
) -> None:
    """Until cancelled: every `interval` seconds, store the text so far if it grew."""
    stored = 0
    while True:
        await asyncio.sleep(interval)
        text = state.text
        if len(text) == stored:
            continue
        try:
            async with transaction(sessions) as session:
                # Never over a final outcome: only while the message is still in progress.
                await session.execute(
                    update(Message)
                    .where(Message.id == message_id, Message.status == "in_progress")
                    .values(content=text)
                )
            stored = len(text)
        except Exception as exc:
            logger.warning("checkpoint of message %s failed: %s", message_id, exc)
