"""Checkpoints: the text of every running answer, stored every few seconds.

If the process dies mid-answer, each message keeps what had been streamed up to the last
checkpoint (start-up recovery marks it failed). All running answers are stored together in one
short transaction per interval: a thousand streams cost one write every few seconds, not a
thousand, so new turns never queue behind checkpoints for SQLite's write lock.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, bindparam
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.protocol import ResponseState
from kaiwa.store.db import transaction
from kaiwa.store.models import Message

logger = logging.getLogger(__name__)

_messages = cast(Table, Message.__table__)
# Never over a final outcome: only while the message is still in progress.
_STORE_TEXT = (
    _messages.update()
    .where(_messages.c.id == bindparam("message_id"), _messages.c.status == "in_progress")
    .values(content=bindparam("text"))
)


@dataclass(slots=True)
class _Watched:
    state: ResponseState
    stored: int = 0
    """Length of the text last stored."""


class Checkpointer:
    """`watch` a running answer, `forget` it when it ends; a background task does the rest."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], interval: float) -> None:
        self._sessions = sessions
        self._interval = interval
        self._watched: dict[int, _Watched] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, message_id: int, state: ResponseState) -> None:
        self._watched[message_id] = _Watched(state)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="kaiwa-checkpoints")

    def forget(self, message_id: int) -> None:
        self._watched.pop(message_id, None)

    async def flush(self) -> int:
        """Store every watched text that grew since it was last stored; return how many."""
        changed = [
            (message_id, watched, watched.state.text)
            for message_id, watched in self._watched.items()
            if len(watched.state.text) != watched.stored
        ]
        if not changed:
            return 0
        rows = [{"message_id": message_id, "text": text} for message_id, _, text in changed]
        async with transaction(self._sessions) as session:
            connection = await session.connection()
            await connection.execute(_STORE_TEXT, rows)
        for _, watched, text in changed:
            watched.stored = len(text)
        return len(changed)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while self._watched:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception as exc:
                logger.warning("checkpoint of %d answers failed: %s", len(self._watched), exc)
