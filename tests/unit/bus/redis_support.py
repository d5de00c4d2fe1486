"""Real Redis servers on loopback, and replicas of `RedisEventLog` on them, for the bus tests.

A server is a `redis-server` child process without persistence, stopped by its own pid. Each
`Replicas` uses a key prefix of its own, so tests never see each other's logs.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import redis as redis_sync

from kaiwa.bus import RedisEventLog, RedisSubscriber, connect

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A `redis-server` child process on 127.0.0.1, without persistence."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--loglevel", "warning"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis_sync.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis_sync.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on {self.port}") from None
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> redis_sync.Redis:
        return redis_sync.Redis(port=self.port, socket_timeout=5)


@dataclass
class Replicas:
    """Replicas of a `RedisEventLog` on one Redis: each its own client and subscriber."""

    url: str
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}:")
    made: list[tuple[RedisEventLog, RedisSubscriber, object]] = field(default_factory=list)

    async def new(self, **settings: float) -> RedisEventLog:
        redis = connect(self.url, socket_timeout=2.0, connect_timeout=0.5)
        subscriber = RedisSubscriber(redis, backoff_max=0.2, start_timeout=2.0)
        await subscriber.start()
        log = RedisEventLog(redis, subscriber, prefix=self.prefix, **settings)  # type: ignore[arg-type]
        self.made.append((log, subscriber, redis))
        return log

    def subscriber(self, log: RedisEventLog) -> RedisSubscriber:
        return next(sub for made, sub, _ in self.made if made is log)

    async def close(self) -> None:
        for log, subscriber, redis in reversed(self.made):
            await log.close()
            await subscriber.aclose()
            await redis.aclose()  # type: ignore[attr-defined]
        self.made.clear()


async def until(condition: Callable[[], bool], *, within: float = 3.0) -> None:
    """Wait until `condition()` holds, looking every 10 ms; fail after `within` seconds."""
    for _ in range(int(within / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still false after {within} s")
