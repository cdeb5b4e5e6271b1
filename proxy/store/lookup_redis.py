"""Lookup entries in Redis, shared by every replica; each replica keeps a local vector index in sync.

Keys, under the store's prefix P:
  P lookup:e:<id>      the entry (proxy.lookup.entries.encode), expiring with it
  P lookup:z:<owner>   sorted set: scope<TAB>id -> expiry; a put drops expired and over-the-limit entries
  P lookup:s:<scope>   set: owner<TAB>id, what DELETE /admin/lookup?scope= removes
  P lookup:log         stream of changes: put <id> | del <id> | clear <scope> (trimmed to LOG_LENGTH)
Each write is one Lua script, so the entry, its indexes and its log event change together.

A replica loads every vector entry at start (before it is ready), then follows the log (XREAD, one
blocking call at a time) and applies each change to its local indexes. While Redis is down every call
raises LookupUnavailable (the lookup is a miss); on its return the replica loads everything again,
since changes it missed may have been trimmed from the log. A semantic search runs on the local index
and reads its candidates back from Redis in one MGET, so an expired or deleted entry is never served.
"""

import asyncio
import contextlib
import logging

import numpy as np
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from proxy.control.config import StoreConfig
from proxy.lookup.entries import Entry, Ignored, LookupUnavailable, Partitions, decode, encode
from proxy.store.redis_errors import REDIS_DOWN, why_down

log = logging.getLogger("thriftgate.lookup")

LOG_LENGTH = 100_000  # changes kept for replicas to catch up on (approximately: XADD MAXLEN ~)
_SCAN_BATCH = 500

_DROP = """
local function drop(prefix, owner, member)
  local tab = string.find(member, '\\t[^\\t]*$')
  local scope, id = string.sub(member, 1, tab - 1), string.sub(member, tab + 1)
  redis.call('DEL', prefix .. 'e:' .. id)
  redis.call('SREM', prefix .. 's:' .. scope, owner .. '\\t' .. id)
  redis.call('XADD', prefix .. 'log', 'MAXLEN', '~', ARGV[9], '*', 'op', 'del', 'id', id)
end
"""

# KEYS: entry, owner set, scope set, log. ARGV: 1 id, 2 entry, 3 ttl ms (0: none), 4 expiry score,
# 5 now, 6 max entries, 7 scope, 8 owner, 9 log length, 10 prefix.
PUT = _DROP + """
local id, member = ARGV[1], ARGV[7] .. '\\t' .. ARGV[1]
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
redis.call('ZADD', KEYS[2], ARGV[4], member)
redis.call('SADD', KEYS[3], ARGV[8] .. '\\t' .. id)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[9], '*', 'op', 'put', 'id', id)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])) do
  drop(ARGV[10], ARGV[8], gone)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
if over > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #popped, 2 do drop(ARGV[10], ARGV[8], popped[i]) end
end
return 1
"""

# KEYS: scope set, log. ARGV: scope, prefix, log length. Returns how many entries were deleted.
DELETE_SCOPE = """
local deleted = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local tab = string.find(member, '\\t[^\\t]*$')
  local owner, id = string.sub(member, 1, tab - 1), string.sub(member, tab + 1)
  deleted = deleted + redis.call('DEL', ARGV[2] .. 'e:' .. id)
  redis.call('ZREM', ARGV[2] .. 'z:' .. owner, ARGV[1] .. '\\t' .. id)
end
redis.call('DEL', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'op', 'clear', 'scope', ARGV[1])
return deleted
"""


class RedisEntries:
    shared = True

    def __init__(self, redis: Redis, *, prefix: str, ignored: Ignored, retry_seconds: float = 1.0,
                 block_ms: int = 250, owns_client: bool = False) -> None:
        """`redis`: its socket timeout must exceed block_ms (a blocking read would time out first).
        owns_client: close it on close() (False when the client is shared with the budget store)."""
        self._redis = redis
        self._owns_client = owns_client
        self._prefix = prefix + "lookup:"
        self._ignored = ignored
        self._retry_seconds = retry_seconds
        self._block_ms = block_ms
        self._partitions = Partitions()
        self._up = False
        self._log_id = "0-0"  # the last change applied to the local indexes
        self._follower: asyncio.Task | None = None
        self._closing = False

    async def start(self) -> None:
        """Loads the indexes before the proxy is ready; an unreachable Redis is retried in the background."""
        self._put = self._redis.register_script(PUT)
        self._delete_scope = self._redis.register_script(DELETE_SCOPE)
        try:
            await self._load_all()
            self._up = True
        except REDIS_DOWN as exc:
            log.warning("lookup store %s at start: lookups are misses until it answers", why_down(exc))
        self._follower = asyncio.create_task(self._follow(), name="thriftgate-lookup-follower")

    async def close(self) -> None:
        self._closing = True  # redis-py may turn the cancellation of a blocking read into a connection error
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        if self._owns_client:
            await self._redis.aclose()

    async def get(self, entry_id: str, now: float) -> Entry | None:
        raw = await self._call(self._redis.get(self._key("e:", entry_id)))
        return None if raw is None else self._checked(raw, entry_id, None, now)

    async def nearest(self, partition: str, vector: np.ndarray, k: int, now: float) -> list[tuple[Entry, float]]:
        if not self._up:
            raise LookupUnavailable("the lookup store is down")
        hits = self._partitions.search(partition, vector, k)
        if not hits:
            return []
        raws = await self._call(self._redis.mget([self._key("e:", entry_id) for entry_id, _ in hits]))
        found = []
        for (entry_id, similarity), raw in zip(hits, raws):
            entry = None if raw is None else self._checked(raw, entry_id, partition, now)
            if entry is None:
                self._partitions.remove(entry_id)  # expired or deleted since: the log will say so too
            else:
                found.append((entry, similarity))
        return found

    async def put(self, entry: Entry, max_entries: int, now: float) -> None:
        ttl_ms = 0 if entry.expires is None else max(int((entry.expires - now) * 1000), 1)
        keys = [self._key("e:", entry.id), self._key("z:", entry.owner), self._key("s:", entry.scope), self._key("log")]
        args = [entry.id, encode(entry), ttl_ms, repr(entry.expires or float("inf")), repr(now), max_entries,
                entry.scope, entry.owner, LOG_LENGTH, self._prefix]
        await self._call(self._put(keys=keys, args=args))
        if entry.vector is not None:
            self._partitions.add(entry)  # seen here at once; the log brings it to the other replicas

    async def delete_scope(self, scope: str) -> int:
        keys = [self._key("s:", scope), self._key("log")]
        deleted = await self._call(self._delete_scope(keys=keys, args=[scope, self._prefix, LOG_LENGTH]))
        self._partitions.drop_scope(scope)
        return int(deleted)

    # ---- keeping the local indexes in sync ----

    async def _follow(self) -> None:
        while not self._closing:
            try:
                if not self._up:
                    await self._load_all()
                    self._up = True
                await self._apply_changes()
            except REDIS_DOWN as exc:
                if self._up:
                    log.warning("lookup store %s: lookups are misses until it returns", why_down(exc))
                self._up = False
                await asyncio.sleep(self._retry_seconds)

    async def _load_all(self) -> None:
        """Every vector entry, read after noting the log's end: changes during the scan are replayed."""
        last = await self._redis.xrevrange(self._key("log"), count=1)
        self._log_id = _text(last[0][0]) if last else "0-0"
        partitions = Partitions()
        async for keys in _batches(self._redis.scan_iter(match=self._key("e:", "*"), count=_SCAN_BATCH)):
            for key, raw in zip(keys, await self._redis.mget(keys)):
                entry_id = _text(key).rsplit(":", 1)[1]
                entry = None if raw is None else self._checked(raw, entry_id, None, None)
                if entry is not None and entry.vector is not None:
                    partitions.add(entry)
        self._partitions = partitions

    async def _apply_changes(self) -> None:
        streams = await self._redis.xread({self._key("log"): self._log_id}, count=1000, block=self._block_ms)
        for _, events in streams or ():
            put_ids = []
            for event_id, fields in events:
                self._log_id = _text(event_id)
                change = {_text(name): _text(value) for name, value in fields.items()}
                if change["op"] == "put":
                    put_ids.append(change["id"])
                elif change["op"] == "del":
                    self._partitions.remove(change["id"])
                elif change["op"] == "clear":
                    self._partitions.drop_scope(change["scope"])
            if put_ids:
                raws = await self._redis.mget([self._key("e:", entry_id) for entry_id in put_ids])
                for entry_id, raw in zip(put_ids, raws):
                    entry = None if raw is None else self._checked(raw, entry_id, None, None)
                    if entry is not None and entry.vector is not None:
                        self._partitions.add(entry)

    # ---- internals ----

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self._prefix}{kind}{name}"

    async def _call(self, command):
        if not self._up:
            command.close()
            raise LookupUnavailable("the lookup store is down")
        try:
            return await command
        except REDIS_DOWN as exc:
            self._up = False  # the follower loads everything again once Redis answers
            raise LookupUnavailable(f"the lookup store {why_down(exc)}") from None

    def _checked(self, raw: bytes | str, entry_id: str, partition: str | None, now: float | None) -> Entry | None:
        entry = decode(raw)
        if entry is None:
            self._ignored("corrupt")
            return None
        if entry.id != entry_id or (partition is not None and entry.partition != partition):
            self._ignored("foreign")
            return None
        return None if now is not None and entry.expired(now) else entry


def connect(config: StoreConfig) -> Redis:
    """A client of the configured Redis, for a store that has none to share (see the module's docstring)."""
    # One retry, on a connection error only: a pooled connection that died with a restarted Redis.
    return Redis.from_url(config.redis_url, socket_timeout=config.timeout_seconds,
                          socket_connect_timeout=config.timeout_seconds,
                          retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))


def _text(value: bytes | str) -> str:
    """The same with a client that decodes responses and one that does not."""
    return value.decode() if isinstance(value, bytes) else value


async def _batches(keys, size: int = _SCAN_BATCH):
    batch = []
    async for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
