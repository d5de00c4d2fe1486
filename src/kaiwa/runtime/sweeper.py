"""The sweeper: ends, exactly once, the answers of replicas that died while producing them.

Every replica sweeps every `sweep_interval` seconds: it lists the responses in progress, asks
which of their owners still have a heartbeat, and ends the others' answers. An answer is ended
by whoever wins a compare-and-set on its row (still in progress, still under the dead owner):
the row and its message become `failed` (the message keeps the text of its last checkpoint),
then the event log is sealed with `response.error` — atomically after its last frame, so a
paused owner that wakes up later can append nothing more, and its readers get the error and
`[DONE]`. The owner's own attempt to store its outcome then fails its compare-and-set too.

An owner counts as dead only once its heartbeat has been missing for `confirm` seconds of this
sweeper's own observations: after Redis restarts empty, every live replica beats again within
a heartbeat interval, well inside that window. Without Redis (one process), every owner but this
process is dead at once, and the first sweep is start-up recovery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.bus import EventLog
from kaiwa.bus.base import BusUnavailable
from kaiwa.bus.replicas import Replicas
from kaiwa.protocol import ErrorCode, ResponseError, encode_frame
from kaiwa.store import responses
from kaiwa.store.db import transaction

logger = logging.getLogger(__name__)

LOST_MESSAGE = "The server producing this answer stopped; the text so far is kept"


class Sweeper:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        log: EventLog,
        replicas: Replicas,
        *,
        confirm: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._log = log
        self._replicas = replicas
        self._confirm = confirm
        self._clock = clock
        self._missing_since: dict[str, float] = {}

    async def sweep(self) -> list[str]:
        """End the answers of dead owners; return their response ids."""
        async with self._sessions() as session:
            running = await responses.running(session)
        me = self._replicas.id
        owners = {r.owner for r in running if r.owner is not None and r.owner != me}
        try:
            alive = await self._replicas.alive(owners)
        except BusUnavailable:
            # No judgement without the heartbeats; nor after a gap in them.
            self._missing_since.clear()
            return []
        now = self._clock()
        missing = {owner: self._missing_since.get(owner, now) for owner in owners - alive}
        self._missing_since = missing
        dead = {owner for owner, since in missing.items() if now - since >= self._confirm}
        ended = []
        for response in running:
            orphan = response.owner is None or response.owner in dead
            if orphan and await self._end(response.id, response.chat_id, response.owner):
                ended.append(response.id)
        if ended:
            logger.warning("ended %d answers of stopped replicas: %s", len(ended), ended)
        return ended

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:
                logger.exception("sweep for answers of stopped replicas failed")

    async def _end(self, response_id: str, chat_id: int, owner: str | None) -> bool:
        code = ErrorCode.SERVER_ERROR
        async with transaction(self._sessions) as session:
            won = await responses.fail_orphan(
                session, response_id, owner, code=int(code), message=LOST_MESSAGE
            )
        if not won:
            return False
        error = ResponseError(
            response_id=response_id, chat_id=chat_id, message=LOST_MESSAGE, code=int(code)
        )
        data = error.model_dump_json()
        try:
            sealed = await self._log.seal(
                response_id, lambda seq: encode_frame(seq, error.type, data)
            )
        except BusUnavailable:
            # Readers fall back to the stored ending once the log is gone.
            logger.warning("could not seal the event log of %s: Redis is unavailable", response_id)
            return True
        if sealed is not None:
            async with transaction(self._sessions) as session:
                await responses.set_last_event_id(session, response_id, sealed)
        return True
