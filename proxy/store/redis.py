"""The Redis store: counters, totals and keys shared by every replica, each step one Lua script.

Keys, all under the configured prefix P (one Redis, not a cluster: a script's keys must live together):
  P c:<counter>     hash: used, held, h:<hold id> -> amount
  P z:<counter>     sorted set: hold id -> deadline, so a script finds and drops dead holds
  P s:<request id>  settled mark: a replayed settlement is applied once
  P spend:<day>     hash: metric|dimension|value -> total (the fleet's spend, by model, team, key, day)
  P keys            hash: key id -> record (JSON);  P keyhash: sha256 -> key id

When Redis cannot be reached the store is down: reserve and key calls raise StoreUnavailable at
once, and settlements wait in memory. A task pings every retry_seconds; when Redis answers, it
writes the waiting settlements in order, and only then is the store up again.
"""

import asyncio
import contextlib
import dataclasses
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy.control.config import StoreConfig, masked_url
from proxy.store import (SETTLED_MARK_SECONDS, SPEND_RETENTION_SECONDS, Charge, Health, KeyRecord, Reserved,
                         Settlement, StoreUnavailable, spend_rows)

log = logging.getLogger("thriftgate.store")
T = TypeVar("T")
# Settlements kept while Redis is down (about half a kilobyte each); past this the oldest are dropped.
MAX_PENDING = 250_000
POOL_WAIT_SECONDS = 10.0
REPLAY_BATCH = 500
_DOWN = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)

# KEYS: n counter hashes, then their n hold sets. ARGV: now, hold deadline, hold id, then per counter
# amount, limit (-1: none), ttl. Returns {refused index or 0, level of each counter before this hold}.
RESERVE = """
local n = #KEYS / 2
local now, id = ARGV[1], ARGV[3]
local field = 'h:' .. id
local levels, refused = {}, 0
for i = 1, n do
  local c, z = KEYS[i], KEYS[n + i]
  local dead = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #dead > 0 then
    local freed = 0
    for _, dead_id in ipairs(dead) do
      freed = freed + (tonumber(redis.call('HGET', c, 'h:' .. dead_id)) or 0)
      redis.call('HDEL', c, 'h:' .. dead_id)
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
    redis.call('HINCRBY', c, 'held', -freed)
  end
  local v = redis.call('HMGET', c, 'used', 'held', field)
  local level = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0) - (tonumber(v[3]) or 0)
  levels[i] = level
  local limit = tonumber(ARGV[3 + 3 * i - 1])
  if refused == 0 and limit >= 0 and level + tonumber(ARGV[3 + 3 * i - 2]) > limit then refused = i end
end
if refused == 0 then
  for i = 1, n do
    local c, z = KEYS[i], KEYS[n + i]
    local amount = tonumber(ARGV[3 + 3 * i - 2])
    local own = tonumber(redis.call('HGET', c, field)) or 0
    redis.call('HINCRBY', c, 'held', amount - own)
    redis.call('HSET', c, field, amount)
    redis.call('ZADD', z, ARGV[2], id)
    redis.call('EXPIRE', c, ARGV[3 + 3 * i])
    redis.call('EXPIRE', z, ARGV[3 + 3 * i])
  end
end
return {refused, unpack(levels)}
"""

# KEYS: n counter hashes, their n hold sets, the settled mark, then the day's spend hash (if any).
# ARGV: hold id, final (1: settle once, with totals; 0: release), n, mark ttl, spend ttl,
# then per counter actual, ttl; then spend field, increment pairs. Returns 0 when already settled.
SETTLE = """
local id, final, n = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3])
if final and not redis.call('SET', KEYS[2 * n + 1], '1', 'NX', 'EX', ARGV[4]) then return 0 end
local field = 'h:' .. id
for i = 1, n do
  local c, z = KEYS[i], KEYS[n + i]
  local held = tonumber(redis.call('HGET', c, field))
  if held then
    redis.call('HINCRBY', c, 'held', -held)
    redis.call('HDEL', c, field)
    redis.call('ZREM', z, id)
  end
  local actual = tonumber(ARGV[5 + 2 * i - 1])
  if actual ~= 0 then
    redis.call('HINCRBY', c, 'used', actual)
    redis.call('EXPIRE', c, ARGV[5 + 2 * i])
  end
end
local spend = KEYS[2 * n + 2]
if final and spend then
  for j = 6 + 2 * n, #ARGV, 2 do redis.call('HINCRBY', spend, ARGV[j], ARGV[j + 1]) end
  redis.call('EXPIRE', spend, ARGV[5])
end
return 1
"""

ADD_KEY = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

KEY_BY_HASH = """
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return false end
return redis.call('HGET', KEYS[1], id)
"""


class RedisStore:
    backend = "redis"
    shared = True

    def __init__(self, config: StoreConfig) -> None:
        self._config = config
        self._prefix = config.key_prefix
        self._where = masked_url(config.redis_url)
        self._redis: Redis | None = None
        self._up = False
        self._pending: deque[Settlement] = deque()
        self._recovery: asyncio.Task | None = None

    async def start(self) -> None:
        timeout = self._config.timeout_seconds
        # Requests beyond max_connections wait for a free connection (a busy pool is not a Redis outage).
        # One retry, on a connection error only: a pooled connection that died with a restarted Redis.
        pool = BlockingConnectionPool.from_url(
            self._config.redis_url, max_connections=self._config.max_connections, timeout=POOL_WAIT_SECONDS,
            decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._redis = Redis.from_pool(pool)
        self._reserve = self._redis.register_script(RESERVE)
        self._settle = self._redis.register_script(SETTLE)
        self._add_key = self._redis.register_script(ADD_KEY)
        self._key_by_hash = self._redis.register_script(KEY_BY_HASH)
        try:
            await self._redis.ping()
        except _DOWN as exc:
            self._went_down(exc)
        else:
            self._up = True

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        if self._pending:
            try:
                await self._write_pending()
            except _DOWN:
                log.error("%d settlements could not be written to Redis at %s before stopping; the ledger has "
                          "these requests", len(self._pending), self._where)
        if self._redis is not None:
            await self._redis.aclose()

    def health(self) -> Health:
        return Health(self.backend, self._up, len(self._pending))

    async def reserve(self, hold_id: str, charges: tuple[Charge, ...], now: float, hold_until: float) -> Reserved:
        keys = [self._key("c:", c.counter) for c in charges] + [self._key("z:", c.counter) for c in charges]
        args: list = [repr(now), repr(hold_until), hold_id]
        for charge in charges:
            args += [charge.amount, -1 if charge.limit is None else charge.limit, charge.ttl]
        result = await self._run(lambda: self._reserve(keys=keys, args=args))
        refused = int(result[0])
        return Reserved(refused == 0, tuple(int(level) for level in result[1:]), refused - 1 if refused else None)

    async def release(self, hold_id: str, counters: Iterable[str]) -> None:
        settlement = Settlement(hold_id, 0.0, tuple((counter, 0, 0) for counter in counters))
        await self._run(lambda: self._write(settlement, final=False))

    async def settle(self, settlement: Settlement) -> None:
        if self._up:
            try:
                await self._write(settlement, final=True)
                return
            except _DOWN as exc:
                self._went_down(exc)
        if len(self._pending) >= MAX_PENDING:
            dropped = self._pending.popleft()
            log.error("more than %d settlements wait for Redis; dropped %s (the ledger has it)", MAX_PENDING, dropped.id)
        self._pending.append(settlement)

    async def spend(self, by: str, days: list[str]) -> list[dict]:
        async def read() -> list[dict]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.hgetall(self._key("spend:", day))
                return await pipe.execute()

        return spend_rows(by, await self._run(read))

    async def add_key(self, record: KeyRecord) -> bool:
        keys = [self._key("keys"), self._key("keyhash")]
        args = [record.id, record.sha256, _encode(record)]
        return bool(await self._run(lambda: self._add_key(keys=keys, args=args)))

    async def key_by_hash(self, sha256: str) -> KeyRecord | None:
        keys = [self._key("keys"), self._key("keyhash")]
        raw = await self._run(lambda: self._key_by_hash(keys=keys, args=[sha256]))
        return _decode(raw) if raw else None

    async def keys(self) -> list[KeyRecord]:
        stored = await self._run(lambda: self._redis.hgetall(self._key("keys")))
        return [_decode(raw) for raw in stored.values()]

    async def revoke_key(self, key_id: str, at: float) -> KeyRecord | None:
        raw = await self._run(lambda: self._redis.hget(self._key("keys"), key_id))
        if raw is None:
            return None
        record = _decode(raw)
        if record.revoked_at is None:
            record = dataclasses.replace(record, revoked_at=at)
            await self._run(lambda: self._redis.hset(self._key("keys"), key_id, _encode(record)))
        return record

    async def mark_once(self, name: str, ttl_seconds: int) -> bool:
        key = self._key("once:", name)
        return bool(await self._run(lambda: self._redis.set(key, "1", nx=True, ex=max(ttl_seconds, 1))))

    async def put_note(self, name: str, text: str, ttl_seconds: int) -> None:
        key = self._key("note:", name)
        await self._run(lambda: self._redis.set(key, text, ex=max(ttl_seconds, 1)))

    async def get_note(self, name: str) -> str | None:
        key = self._key("note:", name)
        return await self._run(lambda: self._redis.get(key))

    # ---- internals ----

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self._prefix}{kind}{name}"

    async def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        message = f"The budget store (Redis at {self._where}) is unreachable."
        if not self._up:
            raise StoreUnavailable(message)  # not even tried
        try:
            return await call()
        except _DOWN as exc:
            self._went_down(exc)
            raise StoreUnavailable(message, attempted=True) from None

    async def _write(self, settlement: Settlement, *, final: bool, client=None) -> None:
        counters = [name for name, _, _ in settlement.counters]
        keys = ([self._key("c:", name) for name in counters] + [self._key("z:", name) for name in counters]
                + [self._key("s:", settlement.id)])
        args: list = [settlement.id, int(final), len(counters), SETTLED_MARK_SECONDS, SPEND_RETENTION_SECONDS]
        for _, actual, ttl in settlement.counters:
            args += [actual, max(ttl, 1)]
        if final and settlement.totals is not None:
            keys.append(self._key("spend:", settlement.totals.day))
            for field, amount in settlement.totals.increments().items():
                args += [field, amount]
        await self._settle(keys=keys, args=args, client=client)

    def _went_down(self, exc: BaseException) -> None:
        self._up = False
        if self._recovery is None or self._recovery.done():
            log.warning("Redis at %s is unreachable (%s); retrying every %ss", self._where,
                        type(exc).__name__, self._config.retry_seconds)
            self._recovery = asyncio.create_task(self._recover(), name="thriftgate-store-recovery")

    async def _recover(self) -> None:
        while True:
            await asyncio.sleep(self._config.retry_seconds)
            try:
                await self._redis.ping()
                written = await self._write_pending()
            except _DOWN:
                continue
            self._up = True  # no await since the queue emptied: nothing slipped in behind it
            log.warning("Redis at %s is reachable again; wrote %d settlements kept meanwhile", self._where, written)
            return

    async def _write_pending(self) -> int:
        """Oldest first, REPLAY_BATCH to a round trip; a batch cut short is sent again (settling is idempotent)."""
        written = 0
        while self._pending:
            batch = list(itertools.islice(self._pending, REPLAY_BATCH))
            async with self._redis.pipeline(transaction=False) as pipe:
                for settlement in batch:
                    await self._write(settlement, final=True, client=pipe)
                results = await pipe.execute(raise_on_error=False)
            for settlement, result in zip(batch, results):
                if isinstance(result, _DOWN):
                    raise result
                if isinstance(result, ResponseError):  # refused (say, out of memory): keep the others moving
                    log.error("Redis refused settlement %s (%s); dropped, the ledger has it", settlement.id, result)
                else:
                    written += 1
                self._pending.popleft()
        return written


def _encode(record: KeyRecord) -> str:
    return orjson.dumps(dataclasses.asdict(record)).decode()


def _decode(raw: str) -> KeyRecord:
    return KeyRecord(**orjson.loads(raw))
