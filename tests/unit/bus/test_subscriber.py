"""`RedisSubscriber`: one shared pub/sub connection that survives being killed and Redis
restarting. Real `redis-server`s on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from tests.unit.bus.redis_support import RedisServer, free_port, until

from kaiwa.bus import BusUnavailable, RedisSubscriber, connect


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(redis_server.url, socket_timeout=2.0, connect_timeout=0.5)
    yield client
    await client.aclose()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def __call__(self, message: bytes) -> None:
        self.messages.append(message)


async def published(redis: Redis, channel: str, message: bytes, inbox: Inbox) -> None:
    """Publish until `inbox` has it: a subscription is live only once Redis processed it."""
    for _ in range(100):
        await redis.publish(channel, message)
        if message in inbox.messages:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{message!r} never arrived")


async def test_handlers_get_the_messages_of_their_channel(redis: Redis) -> None:
    subscriber = RedisSubscriber(redis)
    a, b, also_a = Inbox(), Inbox(), Inbox()
    subscriber.add("t:a", a)
    subscriber.add("t:b", b)
    subscriber.add("t:a", also_a)
    await subscriber.start()
    await redis.publish("t:a", b"one")
    await redis.publish("t:b", b"two")
    await until(lambda: a.messages == [b"one"] and b.messages == [b"two"])
    assert also_a.messages == [b"one"]
    await subscriber.aclose()


async def test_a_channel_added_after_start_is_subscribed(redis: Redis) -> None:
    subscriber = RedisSubscriber(redis)
    await subscriber.start()
    inbox = Inbox()
    subscriber.add("t:late", inbox)
    await published(redis, "t:late", b"hello", inbox)
    await subscriber.aclose()


async def test_a_removed_handler_gets_nothing_more(redis: Redis) -> None:
    subscriber = RedisSubscriber(redis)
    gone, staying = Inbox(), Inbox()
    remove = subscriber.add("t:c", gone)
    subscriber.add("t:c", staying)
    await subscriber.start()
    await published(redis, "t:c", b"1", staying)
    remove()
    await published(redis, "t:c", b"2", staying)
    assert gone.messages == [b"1"]
    await subscriber.aclose()


async def test_a_failing_handler_does_not_stop_the_others(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    subscriber = RedisSubscriber(redis)

    def broken(message: bytes) -> None:
        raise ValueError(message)

    inbox = Inbox()
    subscriber.add("t:d", broken)
    subscriber.add("t:d", inbox)
    await subscriber.start()
    await published(redis, "t:d", b"x", inbox)
    await published(redis, "t:d", b"y", inbox)
    assert "handler of Redis channel" in caplog.text
    await subscriber.aclose()


async def test_it_reconnects_after_its_connection_is_killed(
    redis: Redis, redis_server: RedisServer
) -> None:
    subscriber = RedisSubscriber(redis, backoff_max=0.1)
    inbox = Inbox()
    reconnected = Inbox()
    subscriber.add("t:e", inbox)
    subscriber.on_reconnect(lambda: reconnected(b"again"))
    await subscriber.start()
    assert subscriber.connections == 1
    with redis_server.client() as client:
        assert client.client_kill_filter(_type="pubsub") >= 1
    await until(lambda: subscriber.connections == 2)
    assert reconnected.messages == [b"again"]
    await published(redis, "t:e", b"after", inbox)
    await subscriber.aclose()


async def test_it_reconnects_after_redis_restarts(own_redis: RedisServer) -> None:
    redis = connect(own_redis.url, socket_timeout=1.0, connect_timeout=0.2)
    subscriber = RedisSubscriber(redis, backoff_max=0.1)
    inbox = Inbox()
    subscriber.add("t:f", inbox)
    await subscriber.start()
    own_redis.restart()
    await until(lambda: subscriber.connections == 2, within=5)
    await published(redis, "t:f", b"back", inbox)
    await subscriber.aclose()
    await redis.aclose()


async def test_a_silent_connection_is_dropped_and_made_again(
    redis: Redis, redis_server: RedisServer
) -> None:
    subscriber = RedisSubscriber(redis, ping_interval=0.1, backoff_max=0.1)
    subscriber.add("t:g", Inbox())
    await subscriber.start()
    with redis_server.client() as client:
        client.client_pause(500)  # its PING goes unanswered for longer than ping_interval
    await until(lambda: subscriber.connections >= 2, within=5)
    await subscriber.aclose()


async def test_start_raises_bus_unavailable_when_redis_is_down() -> None:
    redis = connect(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.1)
    subscriber = RedisSubscriber(redis, start_timeout=0.3)
    async with asyncio.timeout(3):
        with pytest.raises(BusUnavailable):
            await subscriber.start()
    await subscriber.aclose()
    await redis.aclose()
