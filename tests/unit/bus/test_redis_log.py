"""`RedisEventLog` beyond the shared contract: its keys in Redis, the doorbell, losing and
getting back Redis, seals, compaction and expiry. Real `redis-server`s on loopback.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import redis as redis_sync
from tests.unit.bus.redis_support import RedisServer, Replicas, until

from kaiwa.bus import (
    BusUnavailable,
    EventLog,
    LogFinished,
    LogNotFound,
    LogRead,
    RedisEventLog,
    RedisSubscriber,
    connect,
)
from kaiwa.bus.chunks import CHUNK
from kaiwa.bus.scripts import APPEND
from kaiwa.protocol.sse import DeltaFrames

RID = "resp_01"


def frame(seq: int) -> bytes:
    return f'id: {seq}\nevent: output_text.delta\ndata: {{"delta": "は{seq}"}}\n\n'.encode()


def frames(first: int, last: int) -> list[bytes]:
    return [frame(seq) for seq in range(first, last + 1)]


def sealing(seq: int) -> bytes:
    return f"id: {seq}\nevent: response.error\ndata: {{}}\n\n".encode()


def ids(got: list[bytes]) -> list[int]:
    return [int(re.match(rb"id: (\d+)\n", f).group(1)) for f in got]  # type: ignore[union-attr]


async def read_all(log: EventLog, after: int = 0) -> LogRead:
    """Every frame after `after` of a finished log, read batch by batch."""
    got: list[bytes] = []
    while True:
        read = await log.read(RID, after, wait=2.0)
        assert read is not None
        got += read.frames
        after = read.last
        if read.finished:
            return LogRead(got, after, True)


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis_sync.Redis]:
    with redis_server.client() as client:
        yield client


def keys_of(client: redis_sync.Redis, replicas: Replicas) -> list[bytes]:
    return sorted(client.keys(f"{replicas.prefix}*"))


def ttls(client: redis_sync.Redis, replicas: Replicas) -> dict[bytes, int]:
    return {key: client.pttl(key) for key in keys_of(client, replicas)}


# -- the keys ------------------------------------------------------------------------------------


async def test_frames_are_stream_entries_with_their_sequence_number_as_id(
    replicas: Replicas, client: redis_sync.Redis
) -> None:
    log = await replicas.new()
    await log.create(RID)
    await log.append(RID, frames(1, 3))
    await log.flush()
    stream = f"{replicas.prefix}log:{{{RID}}}"
    entries = client.xrange(stream)
    assert [(id_, fields) for id_, fields in entries] == [
        (b"1-0", {b"f": frame(1)}),
        (b"2-0", {b"f": frame(2)}),
        (b"3-0", {b"f": frame(3)}),
    ]
    assert client.get(f"{stream}:state") == b"o:3"


async def test_every_key_has_a_ttl_from_create_to_finish(
    replicas: Replicas, client: redis_sync.Redis
) -> None:
    log = await replicas.new(retention=60.0, max_age=600.0)
    await log.create(RID)
    after_create = ttls(client, replicas)
    await log.append(RID, frames(1, 3))
    await log.flush()
    after_appends = ttls(client, replicas)
    await log.append(RID, [frame(4)], finish=True)
    after_finish = ttls(client, replicas)
    await log.create("sealed")
    await log.append("sealed", frames(1, 2))
    await log.flush()
    other = await replicas.new(retention=60.0)
    await other.seal("sealed", sealing)
    assert await log.seal("sealed", sealing) is None
    after_seal = ttls(client, replicas)
    assert len(after_create) == 1
    assert len(after_appends) == 2  # state, stream
    assert len(after_finish) == 2  # state, chunks: the stream gave way to them
    assert all(
        500_000 < ttl <= 600_000 for ttl in [*after_create.values(), *after_appends.values()]
    )
    assert all(50_000 < ttl <= 60_000 for ttl in after_finish.values())
    assert len(after_seal) == 4
    assert all(0 < ttl <= 600_000 for ttl in after_seal.values())


async def test_the_stream_is_never_trimmed(replicas: Replicas, client: redis_sync.Redis) -> None:
    log = await replicas.new()
    await log.create(RID)
    for first in range(1, 2501, 100):
        await log.append(RID, frames(first, first + 99))
    await log.flush()
    assert client.xlen(f"{replicas.prefix}log:{{{RID}}}") == 2500
    elsewhere = await replicas.new()
    read = await elsewhere.read(RID, 0, wait=0)
    assert read == LogRead(frames(1, 1000), last=1000, finished=False)


async def test_a_retried_flush_does_not_duplicate_frames(
    replicas: Replicas, client: redis_sync.Redis
) -> None:
    """A flush whose reply was lost is sent again: the frames Redis has are skipped."""
    log = await replicas.new()
    await log.create(RID)
    stream = f"{replicas.prefix}log:{{{RID}}}"
    keys = [f"{stream}:state", stream, f"{stream}:z"]
    # The first try landed; only its reply was lost.
    first_try = client.evalsha(APPEND.sha, 3, *keys, 1, 2, "", 600_000, 60_000, 0, *frames(1, 2))
    assert first_try == [1, 2]
    await log.append(RID, frames(1, 3))
    await log.flush()
    assert [id_ for id_, _ in client.xrange(stream)] == [b"1-0", b"2-0", b"3-0"]
    elsewhere = await replicas.new()
    assert await elsewhere.read(RID, 0, wait=0) == LogRead(frames(1, 3), last=3, finished=False)


async def test_a_retried_finishing_flush_finds_its_own_end(
    replicas: Replicas, client: redis_sync.Redis
) -> None:
    log = await replicas.new()
    await log.create(RID)
    stream = f"{replicas.prefix}log:{{{RID}}}"
    keys = [f"{stream}:state", stream, f"{stream}:z"]
    args = [1, 2, "f", 600_000, 60_000, 0, *frames(1, 2)]
    assert client.evalsha(APPEND.sha, 3, *keys, *args) == [1, 2]
    assert client.evalsha(APPEND.sha, 3, *keys, *args) == [1, 2]  # ours: not "sealed"
    args[-1] = b"another ending"
    assert client.evalsha(APPEND.sha, 3, *keys, *args) == [2, 2]
    assert client.xlen(stream) == 2


# -- appending without waiting -------------------------------------------------------------------


async def test_appends_return_at_once_while_redis_is_paused(
    replicas: Replicas, client: redis_sync.Redis
) -> None:
    log = await replicas.new()
    await log.create(RID)
    client.client_pause(400)
    started = time.perf_counter()
    for seq in range(1, 101):
        await log.append(RID, [frame(seq)])
    assert time.perf_counter() - started < 0.05
    async with asyncio.timeout(3):
        assert await read_all_open(await replicas.new(), 100) == frames(1, 100)


async def read_all_open(log: EventLog, last: int) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < last:
        read = await log.read(RID, len(got), wait=1.0)
        assert read is not None
        got += read.frames
    return got


async def test_frames_are_readable_here_only_once_durable(replicas: Replicas) -> None:
    log = await replicas.new()
    await log.create(RID)
    await log.append(RID, frames(1, 2))
    assert await log.read(RID, 0, wait=0) == LogRead([], last=0, finished=False)
    elsewhere = await replicas.new()
    async with asyncio.timeout(2):
        here = await log.read(RID, 0, wait=2.0)
    assert here == LogRead(frames(1, 2), last=2, finished=False)
    assert await elsewhere.read(RID, 0, wait=0) == here


async def test_a_finishing_append_returns_once_durable(replicas: Replicas) -> None:
    log = await replicas.new()
    elsewhere = await replicas.new()
    await log.create(RID)
    await log.append(RID, frames(1, 2))
    assert await log.append(RID, [frame(3)], finish=True) == 3
    assert await elsewhere.read(RID, 0, wait=0) == LogRead(frames(1, 3), last=3, finished=True)


async def test_linger_lets_the_next_appends_wait_and_share_a_flush(replicas: Replicas) -> None:
    log = await replicas.new(linger=0.3)
    elsewhere = await replicas.new()
    await log.create(RID)
    await log.append(RID, [frame(1)])  # flushed at once; then the flusher rests
    await asyncio.sleep(0.05)
    await log.append(RID, [frame(2)])
    await log.append(RID, [frame(3)])
    assert await elsewhere.read(RID, 0, wait=0) == LogRead([frame(1)], last=1, finished=False)
    async with asyncio.timeout(2):
        await log.flush()
    assert await elsewhere.read(RID, 1, wait=0) == LogRead(frames(2, 3), last=3, finished=False)


async def test_close_writes_what_is_queued(replicas: Replicas) -> None:
    log = await replicas.new()
    await log.create(RID)
    await log.append(RID, frames(1, 5))
    await log.close()
    elsewhere = await replicas.new()
    assert await elsewhere.read(RID, 0, wait=0) == LogRead(frames(1, 5), last=5, finished=False)


# -- the doorbell --------------------------------------------------------------------------------


async def test_a_reader_elsewhere_wakes_on_the_doorbell_not_the_poll(replicas: Replicas) -> None:
    log = await replicas.new()
    elsewhere = await replicas.new(poll_interval=30.0)
    await log.create(RID)
    await log.append(RID, [frame(1)])
    await log.flush()
    reader = asyncio.create_task(elsewhere.read(RID, 1, wait=20.0))
    await asyncio.sleep(0.05)
    assert not reader.done()
    started = time.perf_counter()
    await log.append(RID, [frame(2)])
    async with asyncio.timeout(2):
        assert await reader == LogRead([frame(2)], last=2, finished=False)
    assert time.perf_counter() - started < 0.5


async def test_readers_still_wake_after_the_pubsub_connection_is_killed(
    replicas: Replicas, client: redis_sync.Redis
) -> None:
    log = await replicas.new()
    elsewhere = await replicas.new(poll_interval=30.0)
    subscriber = replicas.subscriber(elsewhere)
    await log.create(RID)
    reader = asyncio.create_task(elsewhere.read(RID, 0, wait=20.0))
    await asyncio.sleep(0.05)
    assert client.client_kill_filter(_type="pubsub") >= 1
    await log.append(RID, [frame(1)])  # its doorbell may be lost: the reconnect wakes readers
    async with asyncio.timeout(3):
        assert await reader == LogRead([frame(1)], last=1, finished=False)
    await until(lambda: subscriber.connections == 2)
    # And the doorbell itself works again.
    reader = asyncio.create_task(elsewhere.read(RID, 1, wait=20.0))
    await asyncio.sleep(0.05)
    await log.append(RID, [frame(2)])
    async with asyncio.timeout(2):
        assert await reader == LogRead([frame(2)], last=2, finished=False)


# -- Redis lost and back -------------------------------------------------------------------------


async def test_a_redis_restart_loses_nothing_of_a_running_answer(own_redis: RedisServer) -> None:
    replicas = Replicas(own_redis.url)
    try:
        log = await replicas.new(finish_timeout=10.0)
        elsewhere = await replicas.new(poll_interval=0.1)
        await log.create(RID)

        async def follow() -> list[bytes]:
            got: list[bytes] = []
            while True:
                try:
                    read = await elsewhere.read(RID, len(got), wait=1.0)
                except BusUnavailable:
                    await asyncio.sleep(0.05)
                    continue
                assert read is not None, "a log seen open must not vanish while Redis restarts"
                got += read.frames
                if read.finished:
                    return got

        follower = asyncio.create_task(follow())
        for seq in range(1, 51):
            await log.append(RID, [frame(seq)])
        await log.flush()
        await asyncio.sleep(0.1)
        own_redis.stop()
        for seq in range(51, 101):
            await log.append(RID, [frame(seq)])  # queued while Redis is down
        await asyncio.sleep(0.2)
        own_redis.start()  # empty
        for seq in range(101, 150):
            await log.append(RID, [frame(seq)])
        async with asyncio.timeout(10):
            assert await log.append(RID, [frame(150)], finish=True) == 150
            got = await follower
        assert got == frames(1, 150)
        assert ids(got) == list(range(1, 151))
        assert await read_all(await replicas.new()) == LogRead(frames(1, 150), 150, True)
    finally:
        await replicas.close()


async def test_a_log_redis_lost_is_uploaded_again_by_its_producer(
    replicas: Replicas, client: redis_sync.Redis
) -> None:
    log = await replicas.new()
    await log.create(RID)
    await log.append(RID, frames(1, 3))
    await log.flush()
    client.delete(*keys_of(client, replicas))
    await log.append(RID, [frame(4)])
    await log.flush()
    elsewhere = await replicas.new()
    assert await elsewhere.read(RID, 0, wait=0) == LogRead(frames(1, 4), last=4, finished=False)
    assert all(ttl > 0 for ttl in ttls(client, replicas).values())


async def test_a_followed_log_that_vanishes_reads_empty_for_a_grace_period(
    replicas: Replicas, client: redis_sync.Redis
) -> None:
    log = await replicas.new()
    elsewhere = await replicas.new(vanish_grace=0.3)
    await log.create(RID)
    await log.append(RID, frames(1, 2))
    await log.flush()
    assert await elsewhere.read(RID, 0, wait=0) == LogRead(frames(1, 2), last=2, finished=False)
    client.delete(*keys_of(client, replicas))
    assert await elsewhere.read(RID, 2, wait=0) == LogRead([], last=2, finished=False)
    await asyncio.sleep(0.35)
    assert await elsewhere.read(RID, 2, wait=0) is None
    never_seen = await replicas.new()
    assert await never_seen.read(RID, 0, wait=0) is None


# -- sealing -------------------------------------------------------------------------------------


async def test_after_a_seal_the_producer_appends_nothing_readable(
    replicas: Replicas, client: redis_sync.Redis
) -> None:
    producer = await replicas.new()
    sweeper = await replicas.new()
    await producer.create(RID)
    await producer.append(RID, frames(1, 3))
    await producer.flush()
    local_reader = asyncio.create_task(producer.read(RID, 3, wait=5.0))
    await asyncio.sleep(0.05)
    sealed = await asyncio.gather(*(sweeper.seal(RID, sealing) for _ in range(4)))
    assert sorted(sealed, key=str) == [4, None, None, None]
    # The producer hears of the seal on the doorbell; its own readers get the sealing frame.
    async with asyncio.timeout(2):
        assert await local_reader == LogRead([sealing(4)], last=4, finished=True)
    with pytest.raises(LogFinished):
        await producer.append(RID, [frame(4)])
    with pytest.raises(LogFinished):
        await producer.append(RID, [frame(4)], finish=True)
    expected = LogRead([*frames(1, 3), sealing(4)], last=4, finished=True)
    for log in (producer, sweeper, await replicas.new()):
        assert await log.read(RID, 0, wait=0) == expected
    assert client.xlen(f"{replicas.prefix}log:{{{RID}}}") == 4


async def test_a_paused_producer_finds_its_queue_refused_after_a_seal(replicas: Replicas) -> None:
    producer = await replicas.new()
    sweeper = await replicas.new()
    await producer.create(RID)
    await producer.append(RID, frames(1, 2))
    await producer.flush()
    # The producer's replica is muted (its doorbells never arrive), as a paused one would be.
    await replicas.subscriber(producer).aclose()
    assert await sweeper.seal(RID, sealing) == 3
    await producer.append(RID, frames(3, 4))  # queued before it learns of the seal
    await producer.flush()
    with pytest.raises(LogFinished):
        await producer.append(RID, [frame(5)])
    expected = LogRead([*frames(1, 2), sealing(3)], last=3, finished=True)
    assert await sweeper.read(RID, 0, wait=0) == expected
    assert await producer.read(RID, 0, wait=0) == expected


async def test_seal_retries_when_an_append_slips_in(
    replicas: Replicas, client: redis_sync.Redis
) -> None:
    producer = await replicas.new()
    sweeper = await replicas.new()
    await producer.create(RID)
    await producer.append(RID, frames(1, 2))
    await producer.flush()
    stream = f"{replicas.prefix}log:{{{RID}}}"
    keys = [f"{stream}:state", stream, f"{stream}:z"]
    built: list[int] = []

    def build(seq: int) -> bytes:
        built.append(seq)
        if len(built) == 1:  # the producer appends frame 3 between the sweeper's GET and CAS
            client.evalsha(APPEND.sha, 3, *keys, 3, 3, "", 600_000, 60_000, 0, frame(3))
        return sealing(seq)

    assert await sweeper.seal(RID, build) == 4
    assert built == [3, 4]
    assert await read_all(sweeper) == LogRead([*frames(1, 3), sealing(4)], last=4, finished=True)


async def test_a_log_expired_after_a_seal_is_not_uploaded_again(
    replicas: Replicas, client: redis_sync.Redis
) -> None:
    producer = await replicas.new(retention=0.2)
    sweeper = await replicas.new(retention=0.2)
    await producer.create(RID)
    await producer.append(RID, frames(1, 2))
    await producer.flush()
    await replicas.subscriber(producer).aclose()  # paused: it hears nothing
    assert await sweeper.seal(RID, sealing) == 3
    await asyncio.sleep(0.4)  # the sealed log's retention passes
    assert keys_of(client, replicas) == []
    await producer.append(RID, [frame(3)])
    await producer.flush()
    assert keys_of(client, replicas) == []
    with pytest.raises(LogNotFound):
        await producer.append(RID, [frame(4)])


# -- compaction ----------------------------------------------------------------------------------


async def test_a_finished_answer_of_300_deltas_takes_under_64_kib(
    replicas: Replicas, client: redis_sync.Redis
) -> None:
    response_id = str(uuid.uuid4())
    deltas = DeltaFrames(response_id, 1)
    text = "営業時間は平日の午前九時から午後六時までです。"
    log = await replicas.new()
    await log.create(response_id)
    for seq in range(1, 301):
        await log.append(response_id, [deltas.encode(seq, text[seq % 20 : seq % 20 + 3])])
    await log.flush()
    open_bytes = sum(client.memory_usage(key, samples=0) or 0 for key in keys_of(client, replicas))
    await log.append(response_id, [], finish=True)
    done_bytes = sum(client.memory_usage(key, samples=0) or 0 for key in keys_of(client, replicas))
    assert done_bytes <= 64 * 1024 < open_bytes


async def test_readers_mid_follow_do_not_notice_compaction(replicas: Replicas) -> None:
    total = CHUNK * 2 + 500
    log = await replicas.new()
    elsewhere = await replicas.new(read_batch=700)
    await log.create(RID)
    await log.append(RID, frames(1, total - 1))
    await log.flush()
    first = await elsewhere.read(RID, 0, wait=0)
    assert first is not None
    assert first.last == 700
    await log.append(RID, [frame(total)], finish=True)
    rest = await read_all(elsewhere, first.last)
    assert first.frames + rest.frames == frames(1, total)
    assert (rest.last, rest.finished) == (total, True)
    for after in (0, CHUNK - 1, CHUNK, CHUNK + 1, total - 1, total, total + 5):
        read = await elsewhere.read(RID, after, wait=0)
        assert read is not None
        assert read.frames == frames(
            after + 1, min(total, after + 700, (after // CHUNK + 1) * CHUNK)
        )


# -- expiry --------------------------------------------------------------------------------------


async def test_a_finished_log_is_gone_after_its_retention(replicas: Replicas) -> None:
    log = await replicas.new(retention=0.2)
    elsewhere = await replicas.new(retention=0.2)
    await log.create(RID)
    await log.append(RID, frames(1, 2), finish=True)
    assert await elsewhere.read(RID, 0, wait=0) is not None
    await asyncio.sleep(0.4)
    assert await elsewhere.read(RID, 0, wait=0) is None
    assert await log.read(RID, 0, wait=0) is None


async def test_an_open_log_is_gone_after_max_age_without_an_append(replicas: Replicas) -> None:
    log = await replicas.new(max_age=0.3)
    elsewhere = await replicas.new(max_age=0.3)
    await log.create(RID)
    await log.append(RID, frames(1, 2))
    await log.flush()
    assert await elsewhere.read(RID, 0, wait=0) is not None
    await asyncio.sleep(0.5)
    assert await elsewhere.read(RID, 2, wait=0) is None


# -- Redis unavailable ---------------------------------------------------------------------------


async def test_create_read_and_seal_raise_bus_unavailable_when_redis_is_down(
    own_redis: RedisServer,
) -> None:
    replicas = Replicas(own_redis.url)
    try:
        log = await replicas.new()
        elsewhere = await replicas.new()
        await log.create(RID)
        own_redis.stop()
        async with asyncio.timeout(5):
            with pytest.raises(BusUnavailable):
                await log.create("another")
            with pytest.raises(BusUnavailable):
                await elsewhere.read(RID, 0, wait=1.0)
            with pytest.raises(BusUnavailable):
                await elsewhere.seal(RID, sealing)
            await log.append(RID, [frame(1)])  # queued: appends never raise it
    finally:
        await replicas.close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"


async def test_a_server_that_never_answers_is_unavailable_not_a_hang(silent_server: str) -> None:
    redis = connect(silent_server, socket_timeout=0.2, connect_timeout=0.2)
    subscriber = RedisSubscriber(redis)
    log = RedisEventLog(redis, subscriber)
    started = time.perf_counter()
    async with asyncio.timeout(5):
        with pytest.raises(BusUnavailable):
            await log.create(RID)
        with pytest.raises(BusUnavailable):
            await log.read(RID, 0, wait=0)
    assert time.perf_counter() - started < 2
    await log.close()
    await redis.aclose()


# -- the package ---------------------------------------------------------------------------------


async def test_redis_log_satisfies_the_protocol(replicas: Replicas) -> None:
    log: EventLog = await replicas.new()
    assert all(callable(getattr(log, name)) for name in ("create", "append", "read", "seal"))


def test_importing_kaiwa_bus_does_not_load_redis() -> None:
    code = "import sys, kaiwa.bus; assert 'redis' not in sys.modules, 'redis loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
