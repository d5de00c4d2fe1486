"""Cursor properties of every event log, for any interleaving of appends, reads and finishes.

A reader following from any cursor c gets exactly frames c+1..n, in order, with no gap and no
duplicate; what it gets over several reads, concatenated, is the log's content after c. Every
frame names its log and sequence number, so a gap, a duplicate or a stray frame shows up as a
list mismatch. Each example runs on its own event loop.

Each property runs against `MemoryEventLog` and against `RedisEventLog`, where a reader reads
either on the producing replica (from its memory) or on another one (through Redis); each
Redis example has a key prefix of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from tests.unit.bus.redis_support import RedisServer, Replicas

from kaiwa.bus import (
    EventLog,
    LogFinished,
    LogFull,
    LogNotFound,
    LogRead,
    MemoryEventLog,
    RedisEventLog,
)

T = TypeVar("T")

IDS = ("a", "b", "c")
CAP = 600
BATCH = 3


def make_frame(response_id: str, seq: int) -> bytes:
    # Lengths vary (10 to 70 bytes) so the size cap is met at different points.
    return f"{response_id}:{seq}|".encode() + b"." * (seq % 7 * 10)


@dataclass
class Reader:
    response_id: str
    start: int
    cursor: int
    elsewhere: bool
    """Reads on another replica than the producer's (the same log, for `MemoryEventLog`)."""
    got: list[bytes] = field(default_factory=list)


class LogMachine(RuleBasedStateMachine):
    """The log against a model: a list of frames and a finished flag per response."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.log: EventLog
        self.elsewhere: EventLog
        self.run(self.open())
        self.model: dict[str, list[bytes]] = {}
        self.finished: set[str] = set()
        self.readers: list[Reader] = []

    def run(self, step: Awaitable[T]) -> T:
        return self.loop.run_until_complete(step)

    async def open(self) -> None:
        self.log = self.elsewhere = MemoryEventLog(max_bytes=CAP, read_batch=BATCH)

    async def close(self) -> None:
        await self.log.close()

    async def visible(self) -> None:
        """Wait until what was appended is readable everywhere."""

    def teardown(self) -> None:
        self.run(self.close())
        self.loop.close()

    def reader_log(self, reader: Reader) -> EventLog:
        return self.elsewhere if reader.elsewhere else self.log

    def next_frames(self, response_id: str, n: int) -> list[bytes]:
        end = len(self.model.get(response_id, []))
        return [make_frame(response_id, end + i) for i in range(1, n + 1)]

    def refusal(self, response_id: str, new: list[bytes], finish: bool) -> type[Exception] | None:
        if response_id not in self.model:
            return LogNotFound
        if response_id in self.finished:
            return LogFinished
        size = sum(map(len, self.model[response_id])) + sum(map(len, new))
        if size > CAP and not finish:
            return LogFull
        return None

    def accept(self, response_id: str, new: list[bytes], finish: bool) -> None:
        self.model[response_id].extend(new)
        if finish:
            self.finished.add(response_id)

    @rule(response_id=st.sampled_from(IDS))
    def create(self, response_id: str) -> None:
        self.run(self.log.create(response_id))
        self.model.setdefault(response_id, [])

    @rule(response_id=st.sampled_from(IDS), n=st.integers(0, 4), finish=st.booleans())
    def append(self, response_id: str, n: int, finish: bool) -> None:
        new = self.next_frames(response_id, n)
        refused = self.refusal(response_id, new, finish)
        if refused is not None:
            with pytest.raises(refused):
                self.run(self.log.append(response_id, new, finish=finish))
            return
        last = self.run(self.log.append(response_id, new, finish=finish))
        self.run(self.visible())
        self.accept(response_id, new, finish)
        assert last == len(self.model[response_id])

    @rule(response_id=st.sampled_from(IDS), cursor=st.integers(-3, 40), elsewhere=st.booleans())
    def add_reader(self, response_id: str, cursor: int, elsewhere: bool) -> None:
        self.readers.append(Reader(response_id, cursor, cursor, elsewhere))

    @precondition(lambda self: self.readers)
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        reader = data.draw(st.sampled_from(self.readers))
        got = self.run(self.reader_log(reader).read(reader.response_id, reader.cursor, wait=0))
        if reader.response_id not in self.model:
            assert got is None
            return
        content = self.model[reader.response_id]
        after = max(reader.cursor, 0)
        frames = content[after : after + BATCH]
        last = after + len(frames)
        finished = reader.response_id in self.finished and last >= len(content)
        assert got == LogRead(frames=frames, last=last, finished=finished)
        reader.got.extend(got.frames)
        reader.cursor = got.last

    @rule(response_id=st.sampled_from(IDS), waiting=st.integers(1, 4), n=st.integers(1, 4))
    def append_to_waiting_readers(self, response_id: str, waiting: int, n: int) -> None:
        """Readers parked at the end of an open log all wake with the appended frames."""
        if response_id not in self.model or response_id in self.finished:
            return
        new = self.next_frames(response_id, n)
        finish = self.refusal(response_id, new, finish=False) is LogFull
        end = len(self.model[response_id])

        logs = (self.log, self.elsewhere)

        async def scenario() -> list[LogRead | None]:
            parked = [
                asyncio.create_task(logs[i % 2].read(response_id, end, wait=5.0))
                for i in range(waiting)
            ]
            await asyncio.sleep(0)
            assert not any(task.done() for task in parked)
            await self.log.append(response_id, new, finish=finish)
            async with asyncio.timeout(2):
                return await asyncio.gather(*parked)

        results = self.run(scenario())
        self.accept(response_id, new, finish)
        frames = new[:BATCH]
        expected = LogRead(frames, end + len(frames), finish and len(frames) == len(new))
        assert results == [expected] * waiting

    @invariant()
    def readers_got_exactly_the_frames_after_their_cursor(self) -> None:
        for reader in self.readers:
            content = self.model.get(reader.response_id, [])
            assert reader.got == content[max(reader.start, 0) : max(reader.cursor, 0)]

    @invariant()
    def stats_match_the_model(self) -> None:
        if not isinstance(self.log, MemoryEventLog):
            return  # only the memory log keeps stats
        stats = self.log.stats()
        assert stats.logs == len(self.model)
        assert stats.finished == len(self.finished)
        assert stats.frames == sum(map(len, self.model.values()))
        assert stats.bytes == sum(len(f) for content in self.model.values() for f in content)


class RedisLogMachine(LogMachine):
    """The same rules against two replicas of `RedisEventLog` on one Redis."""

    url: ClassVar[str]
    replicas: Replicas

    async def open(self) -> None:
        self.replicas = Replicas(self.url)
        self.log = await self.replicas.new(max_bytes=CAP, read_batch=BATCH)
        self.elsewhere = await self.replicas.new(max_bytes=CAP, read_batch=BATCH)

    async def close(self) -> None:
        await self.replicas.close()

    async def visible(self) -> None:
        assert isinstance(self.log, RedisEventLog)
        async with asyncio.timeout(5):
            await self.log.flush()


LogMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestLogMachine = LogMachine.TestCase


def test_redis_log_against_the_model(redis_server: RedisServer) -> None:
    RedisLogMachine.url = redis_server.url
    run_state_machine_as_test(
        RedisLogMachine, settings=settings(max_examples=100, stateful_step_count=40, deadline=None)
    )


@dataclass(frozen=True)
class Follower:
    elsewhere: bool
    cursor: int
    delay: int
    """Loop turns before its first read: some start before the first append, some after the end."""
    pause: int
    """Loop turns between its reads."""


followers = st.builds(
    Follower,
    elsewhere=st.booleans(),
    cursor=st.integers(-2, 30),
    delay=st.integers(0, 40),
    pause=st.integers(0, 3),
)


@pytest.mark.parametrize("kind", ["memory", "redis"])
@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(st.integers(0, 4), max_size=10),
    last_batch=st.integers(0, 3),
    pauses=st.lists(st.integers(0, 3), min_size=10, max_size=10),
    readers=st.lists(followers, min_size=1, max_size=6),
    read_batch=st.integers(1, 5),
)
def test_live_followers_get_every_frame_after_their_cursor_once_in_order(
    kind: str,
    redis_server: RedisServer,
    batches: list[int],
    last_batch: int,
    pauses: list[int],
    readers: list[Follower],
    read_batch: int,
) -> None:
    content: list[bytes] = []
    for n in [*batches, last_batch]:
        content.extend(make_frame("r", len(content) + i) for i in range(1, n + 1))
    replicas = Replicas(redis_server.url)
    log: EventLog
    elsewhere: EventLog

    async def produce() -> None:
        sent = 0
        for i, n in enumerate(batches):
            await log.append("r", content[sent : sent + n])
            sent += n
            for _ in range(pauses[i]):
                await asyncio.sleep(0)
        await log.append("r", content[sent:], finish=True)

    async def follow(follower: Follower) -> list[bytes]:
        for _ in range(follower.delay):
            await asyncio.sleep(0)
        got: list[bytes] = []
        cursor = follower.cursor
        reading = elsewhere if follower.elsewhere else log
        while True:
            read = await reading.read("r", cursor, wait=5.0)
            assert read is not None
            assert read.last == max(cursor, 0) + len(read.frames)
            got.extend(read.frames)
            cursor = read.last
            if read.finished:
                return got
            for _ in range(follower.pause):
                await asyncio.sleep(0)

    async def scenario() -> list[list[bytes]]:
        nonlocal log, elsewhere
        if kind == "memory":
            log = elsewhere = MemoryEventLog(read_batch=read_batch)
        else:
            log = await replicas.new(read_batch=read_batch)
            elsewhere = await replicas.new(read_batch=read_batch)
        try:
            await log.create("r")
            async with asyncio.timeout(5), asyncio.TaskGroup() as group:
                following = [group.create_task(follow(follower)) for follower in readers]
                group.create_task(produce())
        finally:
            await log.close()
            await replicas.close()
        return [task.result() for task in following]

    received = asyncio.run(scenario())
    for follower, got in zip(readers, received, strict=True):
        assert got == content[max(follower.cursor, 0) :]
