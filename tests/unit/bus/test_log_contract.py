"""The `EventLog` contract, for every implementation: cursors, waiting, the cap, finish, seal.

Each test runs three ways: `memory` (`MemoryEventLog`), `redis-here` (a `RedisEventLog` read on
the replica that produces the log, from its memory) and `redis-elsewhere` (written by one
replica, read by another through Redis). A Redis log's appends become readable once flushed,
so `Pair.visible()` waits for that where a test reads with `wait=0` right after appending.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from tests.unit.bus.redis_support import Replicas

from kaiwa.bus import (
    EventLog,
    EventLogError,
    LogFinished,
    LogFull,
    LogNotFound,
    LogRead,
    MemoryEventLog,
    RedisEventLog,
)

RID = "resp_01"


def frame(seq: int) -> bytes:
    return f'id: {seq}\nevent: output_text.delta\ndata: {{"delta": "は{seq}"}}\n\n'.encode()


def frames(first: int, last: int) -> list[bytes]:
    return [frame(seq) for seq in range(first, last + 1)]


@dataclass
class Pair:
    writer: EventLog
    reader: EventLog

    async def visible(self) -> None:
        """Wait until what was appended is readable (a Redis log flushes in the background)."""
        if isinstance(self.writer, RedisEventLog):
            async with asyncio.timeout(5):
                await self.writer.flush()

    async def filled(self, n: int, *, finish: bool = False) -> None:
        await self.writer.create(RID)
        await self.writer.append(RID, frames(1, n), finish=finish)
        await self.visible()

    def read_now(self, after: int) -> asyncio.Task[LogRead | None]:
        """A read started now, waiting up to 5 s; the test ends it long before."""
        return asyncio.create_task(self.reader.read(RID, after, wait=5.0))


Make = Callable[..., Awaitable[Pair]]


@pytest.fixture(params=["memory", "redis-here", "redis-elsewhere"])
async def make(request: pytest.FixtureRequest, replicas: Replicas) -> AsyncIterator[Make]:
    kind: str = request.param
    memory: list[MemoryEventLog] = []

    async def make(**settings: float) -> Pair:
        if kind == "memory":
            log = MemoryEventLog(**settings)  # type: ignore[arg-type]
            memory.append(log)
            return Pair(log, log)
        writer = await replicas.new(**settings)
        reader = writer if kind == "redis-here" else await replicas.new(**settings)
        return Pair(writer, reader)

    yield make
    for log in memory:
        await log.close()


@pytest.fixture
async def pair(make: Make) -> Pair:
    return await make(retention=60.0, max_age=600.0)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# -- reading -------------------------------------------------------------------------------------


async def test_read_of_unknown_log_returns_none(pair: Pair) -> None:
    assert await pair.reader.read("nope", 0, wait=0) is None


async def test_new_log_reads_empty_not_none(pair: Pair) -> None:
    await pair.writer.create(RID)
    assert await pair.reader.read(RID, 0, wait=0) == LogRead(frames=[], last=0, finished=False)


async def test_append_returns_the_last_sequence_number(pair: Pair) -> None:
    await pair.writer.create(RID)
    assert await pair.writer.append(RID, frames(1, 3)) == 3
    assert await pair.writer.append(RID, [frame(4)]) == 4
    assert await pair.writer.append(RID, []) == 4


async def test_read_returns_frames_strictly_after_the_cursor(pair: Pair) -> None:
    await pair.filled(5)
    assert await pair.reader.read(RID, 2, wait=0) == LogRead(frames(3, 5), last=5, finished=False)


async def test_negative_cursor_reads_from_the_start(pair: Pair) -> None:
    await pair.filled(3)
    assert await pair.reader.read(RID, -7, wait=0) == LogRead(frames(1, 3), last=3, finished=False)


async def test_finished_is_set_when_the_frames_reach_the_end(pair: Pair) -> None:
    await pair.filled(3, finish=True)
    assert await pair.reader.read(RID, 0, wait=0) == LogRead(frames(1, 3), last=3, finished=True)
    assert await pair.reader.read(RID, 3, wait=0) == LogRead([], last=3, finished=True)


async def test_a_batch_short_of_the_end_is_not_finished(make: Make) -> None:
    pair = await make(read_batch=2)
    await pair.filled(5, finish=True)
    read = pair.reader.read
    assert await read(RID, 0, wait=0) == LogRead(frames(1, 2), last=2, finished=False)
    assert await read(RID, 2, wait=0) == LogRead(frames(3, 4), last=4, finished=False)
    assert await read(RID, 4, wait=0) == LogRead([frame(5)], last=5, finished=True)


async def test_cursor_past_the_end_of_a_finished_log_is_finished_at_once(pair: Pair) -> None:
    await pair.filled(3, finish=True)
    async with asyncio.timeout(1):
        assert await pair.reader.read(RID, 9, wait=30) == LogRead([], last=9, finished=True)


async def test_read_of_a_finished_log_never_waits(pair: Pair) -> None:
    await pair.writer.create(RID)
    await pair.writer.append(RID, [], finish=True)
    async with asyncio.timeout(1):
        assert await pair.reader.read(RID, 0, wait=30) == LogRead([], last=0, finished=True)


async def test_waiting_read_times_out_with_no_frames(pair: Pair) -> None:
    await pair.filled(2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await pair.reader.read(RID, 2, wait=0.05) == LogRead([], last=2, finished=False)
    assert loop.time() - started >= 0.04


async def test_cursor_past_the_end_of_an_open_log_waits(pair: Pair) -> None:
    await pair.filled(2)
    assert await pair.reader.read(RID, 7, wait=0.02) == LogRead([], last=7, finished=False)


async def test_zero_wait_returns_at_once(pair: Pair) -> None:
    await pair.filled(2)
    async with asyncio.timeout(1):
        assert await pair.reader.read(RID, 2, wait=0) == LogRead([], last=2, finished=False)


# -- waking --------------------------------------------------------------------------------------


async def test_waiting_reader_wakes_on_append(pair: Pair) -> None:
    await pair.filled(2)
    reader = pair.read_now(2)
    await settle()
    assert not reader.done()
    await pair.writer.append(RID, [frame(3)])
    async with asyncio.timeout(1):
        assert await reader == LogRead([frame(3)], last=3, finished=False)


async def test_waiting_reader_wakes_on_a_bare_finish(pair: Pair) -> None:
    await pair.filled(2)
    reader = pair.read_now(2)
    await settle()
    await pair.writer.append(RID, [], finish=True)
    async with asyncio.timeout(1):
        assert await reader == LogRead([], last=2, finished=True)


async def test_every_waiting_reader_wakes(pair: Pair) -> None:
    await pair.filled(1)
    readers = [pair.read_now(1) for _ in range(100)]
    await settle()
    await pair.writer.append(RID, frames(2, 3), finish=True)
    async with asyncio.timeout(1):
        results = await asyncio.gather(*readers)
    assert all(r == LogRead(frames(2, 3), last=3, finished=True) for r in results)


async def test_reader_past_the_end_sleeps_through_appends_short_of_its_cursor(
    pair: Pair,
) -> None:
    await pair.filled(2)
    reader = pair.read_now(4)
    await settle()
    await pair.writer.append(RID, [frame(3)])
    await pair.visible()
    await settle()
    assert not reader.done()
    await pair.writer.append(RID, frames(4, 5))
    async with asyncio.timeout(1):
        assert await reader == LogRead([frame(5)], last=5, finished=False)


async def test_reader_past_the_end_wakes_when_the_log_finishes(pair: Pair) -> None:
    await pair.filled(2)
    reader = pair.read_now(9)
    await settle()
    await pair.writer.append(RID, [frame(3)], finish=True)
    async with asyncio.timeout(1):
        assert await reader == LogRead([], last=9, finished=True)


async def test_cancelled_reader_leaves_the_others_waiting(pair: Pair) -> None:
    await pair.filled(1)
    gone, staying = pair.read_now(1), pair.read_now(1)
    await settle()
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert not staying.done()
    await pair.writer.append(RID, [frame(2)])
    async with asyncio.timeout(1):
        assert await staying == LogRead([frame(2)], last=2, finished=False)


# -- appending -----------------------------------------------------------------------------------


async def test_append_to_unknown_log_raises_log_not_found(pair: Pair) -> None:
    with pytest.raises(LogNotFound) as caught:
        await pair.writer.append("nope", [frame(1)])
    assert caught.value.response_id == "nope"


async def test_append_after_finish_raises_log_finished(pair: Pair) -> None:
    await pair.filled(1, finish=True)
    with pytest.raises(LogFinished):
        await pair.writer.append(RID, [frame(2)])
    with pytest.raises(LogFinished):
        await pair.writer.append(RID, [], finish=True)


async def test_create_of_an_existing_log_keeps_it(pair: Pair) -> None:
    await pair.filled(2)
    await pair.writer.create(RID)
    assert await pair.reader.read(RID, 0, wait=0) == LogRead(frames(1, 2), last=2, finished=False)


async def test_log_errors_share_a_base() -> None:
    assert issubclass(LogFull, EventLogError)
    assert issubclass(LogFinished, EventLogError)
    assert issubclass(LogNotFound, EventLogError)


# -- the size cap --------------------------------------------------------------------------------


async def test_append_past_the_cap_raises_log_full_and_appends_nothing(make: Make) -> None:
    pair = await make(max_bytes=10)
    await pair.writer.create(RID)
    assert await pair.writer.append(RID, [b"123456"]) == 1
    with pytest.raises(LogFull) as caught:
        await pair.writer.append(RID, [b"abc", b"def"])
    assert (caught.value.response_id, caught.value.size, caught.value.limit) == (RID, 12, 10)
    await pair.visible()
    assert await pair.reader.read(RID, 0, wait=0) == LogRead([b"123456"], last=1, finished=False)


async def test_append_up_to_the_cap_exactly_is_accepted(make: Make) -> None:
    pair = await make(max_bytes=10)
    await pair.writer.create(RID)
    assert await pair.writer.append(RID, [b"12345", b"67890"]) == 2


async def test_finishing_append_is_accepted_past_the_cap(make: Make) -> None:
    """So a producer that got LogFull can still end its response with an error event."""
    pair = await make(max_bytes=10)
    await pair.writer.create(RID)
    await pair.writer.append(RID, [b"123456789"])
    with pytest.raises(LogFull):
        await pair.writer.append(RID, [b"delta"])
    assert await pair.writer.append(RID, [b"error event"], finish=True) == 2
    read = await pair.reader.read(RID, 0, wait=0)
    assert read == LogRead([b"123456789", b"error event"], last=2, finished=True)


# -- sealing -------------------------------------------------------------------------------------


def sealing(seq: int) -> bytes:
    return f"id: {seq}\nevent: response.error\ndata: {{}}\n\n".encode()


async def test_seal_appends_one_terminal_frame_after_the_last(pair: Pair) -> None:
    await pair.filled(3)
    assert await pair.reader.seal(RID, sealing) == 4
    expected = LogRead([*frames(1, 3), sealing(4)], last=4, finished=True)
    assert await pair.reader.read(RID, 0, wait=0) == expected


async def test_seal_of_a_finished_or_unknown_log_returns_none(pair: Pair) -> None:
    await pair.filled(2, finish=True)
    assert await pair.reader.seal(RID, sealing) is None
    assert await pair.reader.seal("nope", sealing) is None
    assert await pair.reader.read(RID, 0, wait=0) == LogRead(frames(1, 2), last=2, finished=True)


async def test_a_log_is_sealed_once(pair: Pair) -> None:
    await pair.filled(2)
    sealed = await asyncio.gather(*(pair.reader.seal(RID, sealing) for _ in range(5)))
    assert sorted(sealed, key=str) == [3, None, None, None, None]


async def test_seal_wakes_waiting_readers(pair: Pair) -> None:
    await pair.filled(2)
    reader = pair.read_now(2)
    await settle()
    await pair.reader.seal(RID, sealing)
    async with asyncio.timeout(2):
        assert await reader == LogRead([sealing(3)], last=3, finished=True)


# -- closing -------------------------------------------------------------------------------------


async def test_close_wakes_waiting_readers_with_none(pair: Pair) -> None:
    await pair.filled(1)
    reader = pair.read_now(1)
    await settle()
    await pair.reader.close()
    async with asyncio.timeout(2):
        assert await reader is None


async def test_closed_log_refuses_create_and_append(pair: Pair) -> None:
    await pair.filled(1)
    await pair.writer.close()
    with pytest.raises(RuntimeError):
        await pair.writer.create("again")
    with pytest.raises(LogNotFound):
        await pair.writer.append(RID, [frame(2)])
    assert await pair.writer.read(RID, 0, wait=0) is None
    await pair.writer.close()  # twice is fine
