"""`MemoryEventLog`: cursor semantics, waiting, the size cap, expiry, stats.

Time is a fake clock passed in, except where the test is about real waiting; expiry is driven
by calling `evict_expired()` (the sweep the background task runs).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import kaiwa.bus
from kaiwa.bus import (
    EventLogError,
    LogFinished,
    LogFull,
    LogNotFound,
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


# -- reading -------------------------------------------------------------------------------------


async def test_read_of_unknown_log_returns_none(log: MemoryEventLog) -> None:
    assert await log.read("nope", 0, wait=0) is None


async def test_new_log_reads_empty_not_none(log: MemoryEventLog) -> None:
    await log.create(RID)
    assert await log.read(RID, 0, wait=0) == LogRead(frames=[], last=0, finished=False)


async def test_append_returns_the_last_sequence_number(log: MemoryEventLog) -> None:
    await log.create(RID)
    assert await log.append(RID, frames(1, 3)) == 3
    assert await log.append(RID, [frame(4)]) == 4
    assert await log.append(RID, []) == 4


async def test_read_returns_frames_strictly_after_the_cursor(log: MemoryEventLog) -> None:
    await filled(log, 5)
    assert await log.read(RID, 2, wait=0) == LogRead(frames(3, 5), last=5, finished=False)


async def test_negative_cursor_reads_from_the_start(log: MemoryEventLog) -> None:
    await filled(log, 3)
    assert await log.read(RID, -7, wait=0) == LogRead(frames(1, 3), last=3, finished=False)


async def test_finished_is_set_when_the_frames_reach_the_end(log: MemoryEventLog) -> None:
    await filled(log, 3, finish=True)
    assert await log.read(RID, 0, wait=0) == LogRead(frames(1, 3), last=3, finished=True)
    assert await log.read(RID, 3, wait=0) == LogRead([], last=3, finished=True)


async def test_a_batch_short_of_the_end_is_not_finished(clock: FakeClock) -> None:
    log = MemoryEventLog(read_batch=2, clock=clock)
    await filled(log, 5, finish=True)
    assert await log.read(RID, 0, wait=0) == LogRead(frames(1, 2), last=2, finished=False)
    assert await log.read(RID, 2, wait=0) == LogRead(frames(3, 4), last=4, finished=False)
    assert await log.read(RID, 4, wait=0) == LogRead([frame(5)], last=5, finished=True)
    await log.close()


async def test_cursor_past_the_end_of_a_finished_log_is_finished_at_once(
    log: MemoryEventLog,
) -> None:
    await filled(log, 3, finish=True)
    async with asyncio.timeout(1):
        assert await log.read(RID, 9, wait=30) == LogRead([], last=9, finished=True)


async def test_read_of_a_finished_log_never_waits(log: MemoryEventLog) -> None:
    await log.create(RID)
    await log.append(RID, [], finish=True)
    async with asyncio.timeout(1):
        assert await log.read(RID, 0, wait=30) == LogRead([], last=0, finished=True)


async def test_waiting_read_times_out_with_no_frames(log: MemoryEventLog) -> None:
    await filled(log, 2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await log.read(RID, 2, wait=0.05) == LogRead([], last=2, finished=False)
    assert loop.time() - started >= 0.04


async def test_cursor_past_the_end_of_an_open_log_waits(log: MemoryEventLog) -> None:
    await filled(log, 2)
    assert await log.read(RID, 7, wait=0.02) == LogRead([], last=7, finished=False)


async def test_zero_wait_returns_at_once(log: MemoryEventLog) -> None:
    await filled(log, 2)
    async with asyncio.timeout(1):
        assert await log.read(RID, 2, wait=0) == LogRead([], last=2, finished=False)


# -- waking --------------------------------------------------------------------------------------


async def test_waiting_reader_wakes_on_append(log: MemoryEventLog) -> None:
    await filled(log, 2)
    reader = read_now(log, 2)
    await settle()
    assert not reader.done()
    await log.append(RID, [frame(3)])
    async with asyncio.timeout(1):
        assert await reader == LogRead([frame(3)], last=3, finished=False)


async def test_waiting_reader_wakes_on_a_bare_finish(log: MemoryEventLog) -> None:
    await filled(log, 2)
    reader = read_now(log, 2)
    await settle()
    await log.append(RID, [], finish=True)
    async with asyncio.timeout(1):
        assert await reader == LogRead([], last=2, finished=True)


async def test_every_waiting_reader_wakes(log: MemoryEventLog) -> None:
    await filled(log, 1)
    readers = [read_now(log, 1) for _ in range(100)]
    await settle()
    await log.append(RID, frames(2, 3), finish=True)
    async with asyncio.timeout(1):
        results = await asyncio.gather(*readers)
    assert all(r == LogRead(frames(2, 3), last=3, finished=True) for r in results)


async def test_reader_past_the_end_sleeps_through_appends_short_of_its_cursor(
    log: MemoryEventLog,
) -> None:
    await filled(log, 2)
    reader = read_now(log, 4)
    await settle()
    await log.append(RID, [frame(3)])
    await settle()
    assert not reader.done()
    await log.append(RID, frames(4, 5))
    async with asyncio.timeout(1):
        assert await reader == LogRead([frame(5)], last=5, finished=False)


async def test_reader_past_the_end_wakes_when_the_log_finishes(log: MemoryEventLog) -> None:
    await filled(log, 2)
    reader = read_now(log, 9)
    await settle()
    await log.append(RID, [frame(3)], finish=True)
    async with asyncio.timeout(1):
        assert await reader == LogRead([], last=9, finished=True)


async def test_cancelled_reader_leaves_the_others_waiting(log: MemoryEventLog) -> None:
    await filled(log, 1)
    gone, staying = read_now(log, 1), read_now(log, 1)
    await settle()
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert not staying.done()
    await log.append(RID, [frame(2)])
    async with asyncio.timeout(1):
        assert await staying == LogRead([frame(2)], last=2, finished=False)


# -- appending -----------------------------------------------------------------------------------


async def test_append_to_unknown_log_raises_log_not_found(log: MemoryEventLog) -> None:
    with pytest.raises(LogNotFound) as caught:
        await log.append("nope", [frame(1)])
    assert caught.value.response_id == "nope"


async def test_append_after_finish_raises_log_finished(log: MemoryEventLog) -> None:
    await filled(log, 1, finish=True)
    with pytest.raises(LogFinished):
        await log.append(RID, [frame(2)])
    with pytest.raises(LogFinished):
        await log.append(RID, [], finish=True)


async def test_create_of_an_existing_log_keeps_it(log: MemoryEventLog) -> None:
    await filled(log, 2)
    await log.create(RID)
    assert await log.read(RID, 0, wait=0) == LogRead(frames(1, 2), last=2, finished=False)


async def test_log_errors_share_a_base() -> None:
    assert issubclass(LogFull, EventLogError)
    assert issubclass(LogFinished, EventLogError)
    assert issubclass(LogNotFound, EventLogError)


# -- the size cap --------------------------------------------------------------------------------


async def test_append_past_the_cap_raises_log_full_and_appends_nothing() -> None:
    log = MemoryEventLog(max_bytes=10)
    await log.create(RID)
    assert await log.append(RID, [b"123456"]) == 1
    with pytest.raises(LogFull) as caught:
        await log.append(RID, [b"abc", b"def"])
    assert (caught.value.response_id, caught.value.size, caught.value.limit) == (RID, 12, 10)
    assert await log.read(RID, 0, wait=0) == LogRead([b"123456"], last=1, finished=False)
    assert log.stats().bytes == 6
    await log.close()


async def test_append_up_to_the_cap_exactly_is_accepted() -> None:
    log = MemoryEventLog(max_bytes=10)
    await log.create(RID)
    assert await log.append(RID, [b"12345", b"67890"]) == 2
    await log.close()


async def test_finishing_append_is_accepted_past_the_cap() -> None:
    """So a producer that got LogFull can still end its response with an error event."""
    log = MemoryEventLog(max_bytes=10)
    await log.create(RID)
    await log.append(RID, [b"123456789"])
    with pytest.raises(LogFull):
        await log.append(RID, [b"delta"])
    assert await log.append(RID, [b"error event"], finish=True) == 2
    read = await log.read(RID, 0, wait=0)
    assert read == LogRead([b"123456789", b"error event"], last=2, finished=True)
    await log.close()


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


async def test_closed_log_refuses_create_and_append() -> None:
    log = MemoryEventLog()
    await filled(log, 1)
    await log.close()
    with pytest.raises(RuntimeError):
        await log.create("again")
    with pytest.raises(LogNotFound):
        await log.append(RID, [frame(2)])
    assert await log.read(RID, 0, wait=0) is None
    await log.close()  # twice is fine


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
        "EventLog",
        "EventLogError",
        "LogFinished",
        "LogFull",
        "LogNotFound",
        "LogRead",
        "LogStats",
        "MemoryEventLog",
    ]


def test_memory_log_satisfies_the_protocol() -> None:
    log: kaiwa.bus.EventLog = MemoryEventLog()
    assert log is not None
