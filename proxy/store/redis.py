"""The Redis store: budget counters, fleet totals and keys shared by every replica.

Budgets run on leases (store/leases.py): a reservation that fits this replica's lease is held in
process memory, with no Redis round trip; one that does not asks Redis to grow the lease, in one
atomic script (store/redis_scripts.py; store/redis_sync.py makes its keys and arguments and applies its
answer). Settlements are summed locally and written in batches by
one sync task, which also renews the leases, gives back those left idle, and gets Redis's view of
each counter. A replica that dies stops holding budget when its leases expire (lease_seconds).

When Redis cannot be reached, or answers writes with an error (full, read-only), the store is down:
reservations that need Redis, and every reservation while down, raise StoreUnavailable at once;
settlements keep adding up locally. A task pings every retry_seconds; when Redis answers it writes
what waited, and only then is the store up.
"""

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from proxy.control.config import StoreConfig, masked_url
from proxy.store import (SETTLE_REPLAY_SECONDS, Charge, Health, KeyRecord, Reserved, Settlement, StoreUnavailable,
                         spend_rows)
from proxy.store.leases import LeaseBook
from proxy.store.redis_errors import REDIS_DOWN, why_down
from proxy.store.redis_scripts import ADD_KEY, KEY_BY_HASH, SYNC
from proxy.store.redis_sync import apply_result, distrust, sync_call

log = logging.getLogger("thriftgate.store")
T = TypeVar("T")
POOL_WAIT_SECONDS = 10.0
# Settlements are written at most this often: a batch gathers what was settled meanwhile.
SYNC_INTERVAL = 0.01


class RedisStore:
    backend = "redis"
    shared = True

    def __init__(self, config: StoreConfig) -> None:
        self._config = config
        self._prefix = config.key_prefix
        self._where = masked_url(config.redis_url)
        self._lease_id = secrets.token_hex(8)
        self._lease_seconds = config.lease_seconds
        self._redis: Redis | None = None
        self._up = False
        self._book = LeaseBook(SETTLE_REPLAY_SECONDS)
        self._lock = asyncio.Lock()  # one sync at a time: leases change only in the order Redis saw
        self._wake = asyncio.Event()
        self._clock = (time.time(), time.monotonic())  # the callers' clock, as last seen
        self._syncer: asyncio.Task | None = None
        self._closing = False
        self._recovery: asyncio.Task | None = None
        self._on_settled: Callable[[str, int], None] | None = None

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
        self._sync_script = self._redis.register_script(SYNC)
        self._add_key = self._redis.register_script(ADD_KEY)
        self._key_by_hash = self._redis.register_script(KEY_BY_HASH)
        try:
            await self._redis.ping()
        except REDIS_DOWN as exc:
            self._went_down(exc)
        else:
            self._up = True
        self._syncer = asyncio.create_task(self._sync_continually(), name="thriftgate-store-sync")

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._syncer is not None:
            await self._syncer
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        try:
            async with self._lock:
                await self._sync(self._now(), closing=True)  # writes what waits, gives the leases back
        except REDIS_DOWN:
            pass
        if self._book.waiting:
            log.error("%d settlements could not be written to Redis at %s before stopping; the ledger has "
                      "these requests", self._book.waiting, self._where)
        if self._redis is not None:
            await self._redis.aclose()

    async def flush(self) -> None:
        if not self._up:
            return
        try:
            async with self._lock:
                await self._sync(self._now())
        except REDIS_DOWN as exc:
            self._went_down(exc)

    def health(self) -> Health:
        # Up, settlements wait SYNC_INTERVAL at most: only those kept through an outage are worth reporting.
        return Health(self.backend, self._up, 0 if self._up else self._book.waiting)

    async def reserve(self, hold_id: str, charges: tuple[Charge, ...], now: float, hold_until: float) -> Reserved:
        self._clock = (now, time.monotonic())
        if not self._up:
            raise StoreUnavailable(self._unreachable)
        decided = self._book.reserve(hold_id, charges, now, hold_until)
        if isinstance(decided, Reserved):
            return decided  # the common case: within this replica's leases
        async with self._lock:
            refused = None
            for _ in range(3):  # a lease grown for this request can be taken by others while it waits
                decided = self._book.reserve(hold_id, charges, now, hold_until)
                if isinstance(decided, Reserved) or refused is not None:
                    break
                if not self._up:
                    raise StoreUnavailable(self._unreachable)
                try:
                    refused = await self._sync(now, decided)
                except REDIS_DOWN as exc:
                    self._went_down(exc)
                    raise StoreUnavailable(self._unreachable) from None
        if isinstance(decided, Reserved):
            return decided
        return self._book.refusal(hold_id, charges, refused, now)

    def on_settled(self, listener: Callable[[str, int], None]) -> None:
        self._on_settled = listener

    async def release(self, hold_id: str, counters: Iterable[str]) -> None:
        self._book.release(hold_id, counters)

    async def settle(self, settlement: Settlement) -> None:
        self._clock = (settlement.at, time.monotonic())
        if self._book.settle(settlement):
            self._wake.set()

    async def spend(self, by: str, days: list[str]) -> list[dict]:
        async def read() -> list[dict]:
            async with self._lock:
                await self._sync(self._now())  # this replica's own settlements first
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

    @property
    def _unreachable(self) -> str:
        return f"The budget store (Redis at {self._where}) is unreachable."

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self._prefix}{kind}{name}"

    def _now(self) -> float:
        """The callers' clock (tests inject one), moved on by the time passed since it was last seen."""
        seen, at = self._clock
        return seen + time.monotonic() - at

    async def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        if not self._up:
            raise StoreUnavailable(self._unreachable)  # not even tried
        try:
            return await call()
        except REDIS_DOWN as exc:
            self._went_down(exc)
            raise StoreUnavailable(self._unreachable, attempted=True) from None

    async def _sync(self, now: float, short: dict[str, int] | None = None, *, closing: bool = False) -> str | None:
        """One script under the lock: writes the waiting batch, grows the `short` leases, renews (or on
        closing gives back) the others. Returns the counter that refused to grow, if any."""
        short = short or {}
        call = sync_call(self._book, self._key, self._lease_id, self._lease_seconds, now, short, closing)
        if call is None:
            return None
        try:
            result = await self._sync_script(keys=call.keys, args=call.args)
        except BaseException:
            distrust(self._book, call)
            raise
        return apply_result(self._book, call, result, now, self._lease_seconds, short, self._on_settled)

    async def _sync_continually(self) -> None:
        """Writes settlements soon after they are made, and renews leases while idle."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._lease_seconds / 4):
                    await self._wake.wait()
            self._wake.clear()
            if self._closing:
                return  # close() makes the last sync itself
            if self._up:
                now = self._now()
                try:
                    async with self._lock:
                        await self._sync(now)
                except REDIS_DOWN as exc:
                    self._went_down(exc)
                except Exception:  # not Redis's doing: the batch is tried again
                    log.exception("could not write settlements to Redis at %s", self._where)
                self._book.sweep(now)
            await asyncio.sleep(SYNC_INTERVAL)

    def _went_down(self, exc: BaseException) -> None:
        self._up = False
        if self._recovery is None or self._recovery.done():
            served = ("served without a reservation" if self._config.on_failure == "open" else "refused")
            log.warning("Redis at %s %s; budgeted requests are %s (store.on_failure: %s) and settlements wait in "
                        "memory; retrying every %ss", self._where, why_down(exc), served, self._config.on_failure,
                        self._config.retry_seconds)
            self._recovery = asyncio.create_task(self._recover(), name="thriftgate-store-recovery")

    async def _recover(self) -> None:
        while True:
            await asyncio.sleep(self._config.retry_seconds)
            waiting = self._book.waiting
            try:
                await self._redis.ping()
                async with self._lock:
                    await self._sync(self._now())
            except REDIS_DOWN:
                continue
            self._up = True  # no await since the batch was confirmed: nothing slipped in behind it
            log.warning("Redis at %s is reachable again; wrote %d settlements kept meanwhile", self._where, waiting)
            return


def _encode(record: KeyRecord) -> str:
    return orjson.dumps(dataclasses.asdict(record)).decode()


def _decode(raw: str) -> KeyRecord:
    fields = orjson.loads(raw)
    return KeyRecord(**{**fields, "tags": tuple(fields.get("tags", ()))})
