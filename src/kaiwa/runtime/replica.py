"""This process as one replica among many: its heartbeat, its sweeps for answers of dead
replicas, the stops addressed to it.

    replica = Replica(replicas, sweeper, stops, heartbeat_interval=1.0, sweep_interval=1.0)
    await replica.start(runtime)    # beat once, sweep once (start-up recovery), then loop
    ...
    await replica.aclose()          # after the runtime drained: leave

Where an answer is produced: `runtime.responses`. Who owns it: its row's `owner`, this
replica's id (`bus.replicas`). Who ends it when its owner dies: `runtime.sweeper`. Who stops it
from another replica: `runtime.stops`.
"""

from __future__ import annotations

import asyncio
import logging

from kaiwa.bus.base import BusUnavailable
from kaiwa.bus.replicas import Replicas
from kaiwa.runtime.stops import LocalStops, Stops
from kaiwa.runtime.sweeper import Sweeper

logger = logging.getLogger(__name__)


class Replica:
    def __init__(
        self,
        replicas: Replicas,
        sweeper: Sweeper,
        stops: Stops,
        *,
        heartbeat_interval: float,
        sweep_interval: float,
    ) -> None:
        self.replicas = replicas
        self._sweeper = sweeper
        self._stops = stops
        self._heartbeat_interval = heartbeat_interval
        self._sweep_interval = sweep_interval
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def id(self) -> str:
        return self.replicas.id

    async def start(self, local: LocalStops) -> None:
        """Beat, recover what dead replicas left (all of it, with no other replica), and keep
        doing both in the background; apply stops addressed here to `local`."""
        await self.replicas.beat()
        await self._sweeper.sweep()
        self._stops.serve(local)
        self._tasks = [
            asyncio.create_task(self._beat_forever(), name="kaiwa-heartbeat"),
            asyncio.create_task(self._sweeper.run(self._sweep_interval), name="kaiwa-sweeper"),
        ]

    async def aclose(self) -> None:
        """Stop the loops and drop the heartbeat: call once nothing runs here any more."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._stops.aclose()
        try:
            await self.replicas.leave()
        except BusUnavailable as exc:
            logger.warning("could not drop this replica's heartbeat: %s", exc)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                await self.replicas.beat()
            except BusUnavailable as exc:
                logger.warning("heartbeat failed: %s", exc)
