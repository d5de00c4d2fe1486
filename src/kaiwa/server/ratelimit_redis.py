"""`RedisRateLimiter`: per-key limits counted in Redis, so that they hold across replicas.

- Requests: a token bucket per key, `<prefix>ratelimit:<key id>:requests`, a hash of `tokens`
  and `updated`, moved by a Lua script on Redis's own clock (`TIME`), so the replicas' clocks
  never have to agree. The key expires once its bucket would be full again (60 s).
- Answers in flight: a sorted set per key, `<prefix>ratelimit:<key id>:answers`, one member per
  slot scored by the end of its lease. A slot is taken by a script that first drops the lapsed
  ones, and removed on release. The replica holding slots renews their leases every third of a
  lease, so the slots of a replica that died lapse within `lease` seconds (30 by default).

When Redis cannot be reached within `timeout` seconds, a request is refused with 503/10005
rather than let through unlimited or left waiting; a release that fails is logged, and its
slot lapses with its lease.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.server.ratelimit import StreamSlot, too_many_answers, too_many_requests

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisRateLimiter"]

logger = logging.getLogger(__name__)

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""

_CHECK_REQUEST = (
    _NOW
    + """
local capacity = tonumber(ARGV[1])
local rate = capacity / 60
local tokens = capacity
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
if state[1] then
  tokens = math.min(capacity, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rate)
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('EXPIRE', KEYS[1], 60)
return {allowed, tostring(tokens)}
"""
)

_ACQUIRE = (
    _NOW
    + """
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000))
return 1
"""
)

# KEYS: the sets; ARGV: the lease, then one member per key. A slot that lapsed meanwhile is
# not brought back (XX): another replica may have taken its place.
_RENEW = (
    _NOW
    + """
local lease = tonumber(ARGV[1])
for index, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + lease, ARGV[index + 1])
  redis.call('PEXPIRE', key, math.ceil(lease * 1000))
end
return #KEYS
"""
)

_COUNT = (
    _NOW
    + """
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""
)


class RedisRateLimiter:
    """The counts in Redis, shared by every replica that uses the same Redis and `prefix`.

    `lease` is how long a slot outlives the last renewal by its replica; `timeout` bounds each
    call to Redis. The Redis client is the caller's to close.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        per_minute: int,
        concurrent: int,
        lease: float = 30.0,
        timeout: float = 2.0,
        prefix: str = "kaiwa:",
    ) -> None:
        self._redis = redis
        self._per_minute = per_minute
        self._concurrent = concurrent
        self._lease = lease
        self._timeout = timeout
        self._prefix = f"{prefix}ratelimit:"
        self._check = redis.register_script(_CHECK_REQUEST)
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._count = redis.register_script(_COUNT)
        self._held: dict[str, str] = {}
        """This replica's slots: member → its set."""
        self._renewer: asyncio.Task[None] | None = None

    async def check_request(self, key_id: str) -> None:
        if self._per_minute <= 0:
            return
        allowed, tokens = await self._call(
            self._check(keys=[self._key(key_id, "requests")], args=[self._per_minute])
        )
        if not int(allowed):
            rate = self._per_minute / 60.0
            raise too_many_requests(self._per_minute, (1.0 - float(tokens)) / rate)

    async def acquire_stream(self, key_id: str) -> StreamSlot:
        if self._concurrent <= 0:
            return StreamSlot()
        answers = self._key(key_id, "answers")
        member = uuid.uuid4().hex
        taken = await self._call(
            self._acquire(keys=[answers], args=[self._concurrent, member, self._lease])
        )
        if not int(taken):
            raise too_many_answers(self._concurrent)
        self._held[member] = answers
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_forever())

        async def release() -> None:
            self._held.pop(member, None)
            try:
                async with asyncio.timeout(self._timeout):
                    await self._redis.zrem(answers, member)
            except (RedisError, OSError) as exc:
                logger.warning("Could not release an answer's slot (it lapses): %r", exc)

        return StreamSlot(release)

    async def in_flight(self, key_id: str) -> int:
        return int(await self._call(self._count(keys=[self._key(key_id, "answers")])))

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        held, self._held = self._held, {}
        if not held:
            return
        try:
            async with asyncio.timeout(self._timeout), self._redis.pipeline() as pipe:
                for member, answers in held.items():
                    pipe.zrem(answers, member)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("Could not release %d slots at shutdown: %r", len(held), exc)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            held = list(self._held.items())
            if not held:
                continue
            try:
                async with asyncio.timeout(self._timeout):
                    await self._renew(
                        keys=[answers for _member, answers in held],
                        args=[self._lease, *(member for member, _answers in held)],
                    )
            except (RedisError, OSError) as exc:  # the next round tries again
                logger.warning("Could not renew %d answers' slots: %r", len(held), exc)

    async def _call(self, call: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await call
        except (RedisError, OSError) as exc:
            raise ApiError(
                ErrorCode.SERVER_ERROR,
                "Rate limits cannot be checked: Redis is not reachable; try again shortly",
                status=503,
            ) from exc

    def _key(self, key_id: str, what: str) -> str:
        return f"{self._prefix}{key_id}:{what}"
