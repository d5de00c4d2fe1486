"""Stops: stop or interrupt an answer that another replica produces; apply the stops sent here.

A stop for an answer running elsewhere is two signals: a flag on its response row (the owner
reads the flags of its answers every `poll_interval` seconds) and a message on the owner's
control channel (the fast path). Either one is enough; a lost message is only a delay. The
sender then waits for the answer's log to end, so a stop answers with the final state wherever
it lands.

    stops = Stops(sessions, log, control, replica_id, poll_interval=1.0)
    stops.serve(runtime)                                   # apply stops addressed here
    await stops.stop_elsewhere(response_id, "stop", wait=10.0)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Literal, Protocol, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.bus import EventLog
from kaiwa.bus.base import BusUnavailable
from kaiwa.bus.control import RedisControl
from kaiwa.store import responses
from kaiwa.store.db import transaction

logger = logging.getLogger(__name__)

CancelReason = Literal["stop", "interrupt", "disconnect", "shutdown"]
"""Why a response was cancelled. An interrupt ends its stream with error 10010; the others end
it with `completed`, status `cancelled`."""

_PAST_THE_END = 2**53
"""A cursor past any log's end: a read from it returns only when the log finishes."""
_REASONS = frozenset({"stop", "interrupt", "disconnect", "shutdown"})


class LocalStops(Protocol):
    def request_cancel(self, response_id: str, reason: CancelReason) -> bool:
        """Ask an answer running here to stop; False if it does not run here."""
        ...


class Stops:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        log: EventLog,
        control: RedisControl | None,
        replica_id: str,
        *,
        poll_interval: float,
    ) -> None:
        """`control` None: one process, where every running answer is local."""
        self._sessions = sessions
        self._log = log
        self._control = control
        self._id = replica_id
        self._poll_interval = poll_interval
        self._poller: asyncio.Task[None] | None = None

    def serve(self, local: LocalStops) -> None:
        """Apply to `local` every stop addressed to this replica, by message or by flag."""
        if self._control is None:
            return

        def apply(response_id: str, reason: str) -> None:
            if reason in _REASONS:
                local.request_cancel(response_id, cast(CancelReason, reason))

        self._control.listen(apply)
        self._poller = asyncio.create_task(self._poll(apply), name="kaiwa-stop-flags")

    async def stop_elsewhere(self, response_id: str, reason: CancelReason, *, wait: float) -> bool:
        """Ask the owner of an answer running on another replica to stop it, and wait (up to
        `wait` seconds) for its log to end. False when no replica produces it."""
        if self._control is None:
            return False
        async with transaction(self._sessions) as session:
            owner = await responses.ask_to_cancel(session, response_id, reason)
        if owner is None:
            return False
        try:
            await self._control.send(owner, response_id, reason)
        except BusUnavailable:
            logger.warning("stop of %s sent by flag only: Redis is unavailable", response_id)
        await self._ended(response_id, wait)
        return True

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None

    async def _ended(self, response_id: str, wait: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            try:
                read = await self._log.read(response_id, _PAST_THE_END, wait=min(left, 1.0))
            except BusUnavailable:
                read = None
            if read is not None and read.finished:
                return
            if read is None:
                # No log to watch (gone, or Redis is down): the row says when it ended.
                async with self._sessions() as session:
                    if not await responses.is_running(session, response_id):
                        return
                await asyncio.sleep(min(left, 0.1))
        logger.warning("response %s did not end within %ss of its stop", response_id, wait)

    async def _poll(self, apply: Callable[[str, str], None]) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                async with self._sessions() as session:
                    flagged = await responses.cancels_for(session, self._id)
            except Exception as exc:
                logger.warning("could not read the stop flags: %s", exc)
                continue
            for response_id, reason in flagged:
                apply(response_id, reason)
