"""The Lua scripts of `RedisEventLog`: each one log's whole change or snapshot, atomically.

Keys of a log (the `{}` hash tag keeps them in one cluster slot):

    <prefix>log:{<rid>}          stream: one entry per frame, id `<seq>-0`, field `f`
    <prefix>log:{<rid>}:state    `o:<last>` while open, `d:<last>` once finished
    <prefix>log:{<rid>}:z        hash: chunk index → zlib chunk (`chunks.py`), once compacted

Every script that can create a key gives it its TTL before it returns, so no key ever lives
without one; retention is by expiry only, never by trimming the stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

__all__ = ["APPEND", "READ", "SEAL", "Script", "call", "keys"]


def keys(prefix: str, response_id: str) -> tuple[str, str, str]:
    """State, stream and chunks keys of a log, for a key prefix like `kaiwa:`."""
    stream = f"{prefix}log:{{{response_id}}}"
    return f"{stream}:state", stream, f"{stream}:z"


@dataclass(frozen=True, slots=True)
class Script:
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())

    async def run(self, redis: Redis, keys: tuple[str, ...], *args: bytes | str | int) -> Any:
        """EVALSHA, loading the script first if Redis does not have it (it restarted)."""
        try:
            return await call(redis.evalsha(self.sha, len(keys), *keys, *args))
        except NoScriptError:
            await redis.script_load(self.source)
            return await call(redis.evalsha(self.sha, len(keys), *keys, *args))


async def call(reply: Awaitable[Any] | Any) -> Any:
    """Await a redis-py command: its result is typed "awaitable or not", for the sync and async
    clients alike."""
    return await cast("Awaitable[Any]", reply)


APPEND = Script(
    """
-- KEYS: state, stream, chunks
-- ARGV: first, last, flags, max_age_ms, retention_ms, nchunks, chunk…, frame…
-- The frames are first..last (none when nchunks > 0: the chunks hold the whole log).
-- flags: 'f' finishes the log; 'r' re-creates it when it is missing (Redis lost it).
-- Returns {1, last} done, {0, 0} missing, {2, stored} finished (sealed by someone else),
-- {3, stored} behind: Redis holds less than first - 1 (send again from stored + 1).
local first, last = tonumber(ARGV[1]), tonumber(ARGV[2])
local finish = string.find(ARGV[3], 'f', 1, true) ~= nil
local nchunks = tonumber(ARGV[6])
local at = 7 + nchunks
local stored = 0
local state = redis.call('GET', KEYS[1])
if not state then
  if not string.find(ARGV[3], 'r', 1, true) then return {0, 0} end
  redis.call('DEL', KEYS[2], KEYS[3])
else
  stored = tonumber(string.sub(state, 3))
  if string.sub(state, 1, 1) == 'd' then
    -- A finishing flush retried after its reply was lost finds its own ending.
    if finish and stored == last then
      local ours
      if nchunks > 0 then
        ours = redis.call('HGET', KEYS[3], tostring(nchunks - 1)) == ARGV[6 + nchunks]
      else
        local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
        ours = top[1] ~= nil and top[1][2][2] == ARGV[#ARGV]
      end
      if ours then return {1, stored} end
    end
    return {2, stored}
  end
  if nchunks == 0 and stored < first - 1 then return {3, stored} end
end
if nchunks > 0 then
  redis.call('DEL', KEYS[2], KEYS[3])
  for i = 1, nchunks do
    redis.call('HSET', KEYS[3], tostring(i - 1), ARGV[6 + i])
  end
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
  redis.call('SET', KEYS[1], 'd:' .. last, 'PX', ARGV[5])
  return {1, last}
end
for i = at, #ARGV do
  local seq = first + i - at
  if seq > stored then
    redis.call('XADD', KEYS[2], seq .. '-0', 'f', ARGV[i])
  end
end
if stored > last then last = stored end
local ttl, mark = ARGV[4], 'o:'
if finish then ttl, mark = ARGV[5], 'd:' end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('SET', KEYS[1], mark .. last, 'PX', ttl)
return {1, last}
"""
)

READ = Script(
    """
-- KEYS: state, stream, chunks
-- ARGV: after, count, frames per chunk
-- Returns nil (no such log), {state, pttl} (nothing after the cursor), {state, pttl, 's',
-- frame…} (from the stream) or {state, pttl, 'z', chunk} (the chunk holding after + 1).
local state = redis.call('GET', KEYS[1])
if not state then return false end
local pttl = redis.call('PTTL', KEYS[1])
local after = tonumber(ARGV[1])
if after >= tonumber(string.sub(state, 3)) then return {state, pttl} end
if string.sub(state, 1, 1) == 'd' then
  local chunk = redis.call('HGET', KEYS[3], tostring(math.floor(after / tonumber(ARGV[3]))))
  if chunk then return {state, pttl, 'z', chunk} end
end
local out = {state, pttl, 's'}
local entries = redis.call('XRANGE', KEYS[2], (after + 1) .. '-0', '+', 'COUNT', ARGV[2])
for i = 1, #entries do out[i + 3] = entries[i][2][2] end
return out
"""
)

SEAL = Script(
    """
-- KEYS: state, stream
-- ARGV: expected last, frame, retention_ms, doorbell channel, response id
-- Returns {1, seq} sealed, {0, 0} finished or missing, {2, stored} the log moved on.
-- The doorbell names the log as '!<rid>': its producer, if alive, learns of the seal too.
local state = redis.call('GET', KEYS[1])
if not state or string.sub(state, 1, 1) ~= 'o' then return {0, 0} end
local stored = tonumber(string.sub(state, 3))
if stored ~= tonumber(ARGV[1]) then return {2, stored} end
local seq = stored + 1
redis.call('XADD', KEYS[2], seq .. '-0', 'f', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], 'd:' .. seq, 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], '!' .. ARGV[5])
return {1, seq}
"""
)
