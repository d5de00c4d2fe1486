"""`MemoryEventLog`'s own behaviour: expiry, stats, discarding. The contract it shares with
`RedisEventLog` (cursors, waiting, the cap, finish, seal) is in test_log_contract.py.

Time is a fake clock passed in; expiry is driven by calling `evict_expired()` (the sweep the
background task runs).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import kaiwa.bus
from kaiwa.bus import (
    LogRead,
    LogStats,
    MemoryEventLog,
)

RID = "resp_01"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def frame(seq: int) -> bytes:
    return f'id: {seq}\nevent: output_text.delta\ndata: {{"delta": "は{seq}"}}\n\n'.encode()


def frames(first: int, last: int) -> list[bytes]:
    return [frame(seq) for seq in range(first, last + 1)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def log(clock: FakeClock) -> AsyncIterator[MemoryEventLog]:
    log = MemoryEventLog(retention=60.0, max_age=600.0, clock=clock)
    yield log
    await log.close()


async def filled(log: MemoryEventLog, n: int, *, finish: bool = False) -> None:
    await log.create(RID)
    await log.append(RID, frames(1, n), finish=finish)


def read_now(log: MemoryEventLog, after: int) -> asyncio.Task[LogRead | None]:
    """A read started now, waiting up to 5 s; the test ends it long before."""
    return asyncio.create_task(log.read(RID, after, wait=5.0))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# -- expiry --------------------------------------------------------------------------------------


async def test_finished_log_stays_readable_for_its_retention(
    log: MemoryEventLog, clock: FakeClock
) -> None:
    await filled(log, 2, finish=True)
    clock.advance(59.9)
    assert log.evict_expired() == 0
    assert await log.read(RID, 0, wait=0) is not None


async def test_finished_log_is_evicted_after_its_retention(
    log: MemoryEventLog, clock: FakeClock
) -> None:
    await filled(log, 2, finish=True)
    clock.advance(60)
    assert log.evict_expired() == 1
    assert await log.read(RID, 0, wait=0) is None
    assert log.stats() == LogStats(logs=0, open=0, finished=0, frames=0, bytes=0)


async def test_unfinished_log_is_evicted_after_max_age_without_append(
    log: MemoryEventLog, clock: FakeClock
) -> None:
    await filled(log, 2)
    clock.advance(600)
    assert log.evict_expired() == 1
    assert await log.read(RID, 0, wait=0) is None


async def test_append_restarts_the_max_age_clock(log: MemoryEventLog, clock: FakeClock) -> None:
    await filled(log, 1)
    await log.create("other")
    clock.advance(500)
    await log.append(RID, [frame(2)])
    clock.advance(200)
    assert log.evict_expired() == 1  # "other", idle for 700 s; RID only for 200 s
    assert await log.read("other", 0, wait=0) is None
    assert await log.read(RID, 0, wait=0) is not None


async def test_retention_runs_from_the_finish_not_the_last_append(
    log: MemoryEventLog, clock: FakeClock
) -> None:
    await filled(log, 1)
    clock.advance(500)
    await log.append(RID, [], finish=True)
    clock.advance(100)
    assert log.evict_expired() == 1


async def test_create_sweeps_expired_logs(log: MemoryEventLog, clock: FakeClock) -> None:
    await filled(log, 1, finish=True)
    clock.advance(61)
    await log.create("next")
    assert await log.read(RID, 0, wait=0) is None
    assert log.stats().logs == 1


async def test_reader_waiting_on_an_evicted_log_gets_none(
    log: MemoryEventLog, clock: FakeClock
) -> None:
    await filled(log, 1)
    reader = read_now(log, 1)
    await settle()
    clock.advance(600)
    log.evict_expired()
    async with asyncio.timeout(1):
        assert await reader is None


async def test_background_sweep_evicts_expired_logs() -> None:
    log = MemoryEventLog(retention=0.01, sweep_interval=0.01)
    await filled(log, 1, finish=True)
    await asyncio.sleep(0.2)
    assert log.stats().logs == 0
    await log.close()


# -- closing -------------------------------------------------------------------------------------


async def test_close_wakes_readers_and_stops_the_sweeper() -> None:
    log = MemoryEventLog()
    await filled(log, 1)
    reader = read_now(log, 1)
    await settle()
    await log.close()
    async with asyncio.timeout(1):
        assert await reader is None
    assert asyncio.all_tasks() == {asyncio.current_task()}


# -- discarding and copying ----------------------------------------------------------------------


async def test_discard_drops_a_log_and_wakes_its_readers_with_none(log: MemoryEventLog) -> None:
    await filled(log, 2)
    reader = read_now(log, 2)
    await settle()
    assert log.discard(RID) is True
    async with asyncio.timeout(1):
        assert await reader is None
    assert log.discard(RID) is False
    assert log.stats() == LogStats(logs=0, open=0, finished=0, frames=0, bytes=0)


async def test_frames_is_a_copy_of_every_frame(log: MemoryEventLog) -> None:
    await filled(log, 3)
    held = log.frames(RID)
    assert held == frames(1, 3)
    assert held is not None
    held.clear()
    assert log.frames(RID) == frames(1, 3)
    assert log.frames("nope") is None


# -- stats and construction ----------------------------------------------------------------------


async def test_stats_count_logs_frames_and_bytes(log: MemoryEventLog) -> None:
    await log.create("a")
    await log.append("a", [b"12", b"345"])
    await log.create("b")
    await log.append("b", [b"6789"], finish=True)
    assert log.stats() == LogStats(logs=2, open=1, finished=1, frames=3, bytes=9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"retention": -1.0},
        {"max_age": 0.0},
        {"max_bytes": 0},
        {"read_batch": 0},
        {"sweep_interval": 0.0},
    ],
)
def test_constructor_rejects_impossible_limits(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message lists every limit
        MemoryEventLog(**kwargs)  # type: ignore[arg-type]


def test_public_surface_is_pinned() -> None:
    assert sorted(kaiwa.bus.__all__) == [
        "BusUnavailable",
        "EventLog",
        "EventLogError",
        "LogFinished",
        "LogFull",
        "LogNotFound",
        "LogRead",
        "LogStats",
        "MemoryEventLog",
        "RedisEventLog",
        "RedisSubscriber",
        "connect",
    ]
    assert all(getattr(kaiwa.bus, name) is not None for name in kaiwa.bus.__all__)


def test_memory_log_satisfies_the_protocol() -> None:
    log: kaiwa.bus.EventLog = MemoryEventLog()
    assert log is not None
