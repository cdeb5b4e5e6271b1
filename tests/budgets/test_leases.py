"""Leases: replicas serve budgets from slices of Redis headroom, and still never spend past a limit.

Store-level tests use the shared Redis under their own prefix; the 4-replica test runs real processes."""

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp
import redis.asyncio as redis

from proxy.control.config import StoreConfig
from proxy.store import Charge, Settlement, Totals
from proxy.store.redis import RedisStore
from tests.budgets.replicas import Replica
from tests.budgets.test_budgets import MAX_TOKENS, MESSAGES, request_cost, usd
from tests.conftest import base_config, merged
from tests.shared import END_OF_MARCH, REDIS_URL, todays_global_usd

NOW = END_OF_MARCH
HOLD = 900.0


def redis_store(prefix: str, **settings) -> RedisStore:
    return RedisStore(StoreConfig(backend="redis", redis_url=REDIS_URL, key_prefix=prefix, **settings))


def charge(amount: int, limit: int = 100) -> tuple[Charge, ...]:
    return (Charge("usd:day:x:global", amount, limit, 3600),)


async def test_a_dead_replicas_lease_stops_holding_budget_after_the_lease_window(redis_prefix: str) -> None:
    dead, alive = redis_store(redis_prefix, lease_seconds=10), redis_store(redis_prefix, lease_seconds=10)
    await dead.start()
    await alive.start()
    try:
        assert (await dead.reserve("d1", charge(10), NOW, NOW + HOLD)).ok  # leases 10 and a slice beyond
        lease = dead._book.counters["usd:day:x:global"].lease
        assert 10 < lease < 100
        await dead._redis.aclose()  # dies: no settle, no sync, no goodbye
        dead._up = False
        # While its lease lives, the others can have only what it does not hold.
        assert not (await alive.reserve("a1", charge(100 - lease + 1), NOW + 9, NOW + HOLD)).ok
        assert (await alive.reserve("a2", charge(100 - lease), NOW + 9, NOW + HOLD)).ok
        await alive.release("a2", ["usd:day:x:global"])
        # Past its deadline the whole budget is free again.
        assert (await alive.reserve("a3", charge(100), NOW + 10.5, NOW + HOLD)).ok
    finally:
        await alive.close()
        dead._syncer.cancel()


async def test_settlements_leave_no_key_per_request(redis_prefix: str) -> None:
    """One batch mark per replica (s:<lease id>), never one per request (issue 10, item 10)."""
    store = redis_store(redis_prefix)
    await store.start()
    try:
        for i in range(200):
            assert (await store.reserve(f"r{i}", charge(1, limit=1000), NOW, NOW + HOLD)).ok
            await store.settle(Settlement(f"r{i}", NOW, (("usd:day:x:global", 1, 3600),),
                                          Totals("2025-03-31", "gpt-4o", "t", None, 1, 1, 0, 0, 1)))
        rows = await store.spend("model", ["2025-03-31"])
        assert (rows[0]["requests"], rows[0]["cost_nanos"]) == (200, 200)
    finally:
        await store.close()
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        keys = sorted([key.removeprefix(redis_prefix) async for key in client.scan_iter(match=redis_prefix + "*")])
        marks = [key for key in keys if key.startswith("s:")]
        assert len(keys) <= 4 and len(marks) == 1, keys
        assert 0 < await client.ttl(redis_prefix + marks[0]) <= 86400
        counter = await client.hgetall(redis_prefix + "c:usd:day:x:global")
        assert (counter["used"], counter["leased"]) == ("200", "0")  # closed: its lease was given back
    finally:
        await client.aclose()


async def test_an_idle_lease_is_given_back(redis_prefix: str) -> None:
    busy, idle = redis_store(redis_prefix, lease_seconds=2), redis_store(redis_prefix, lease_seconds=2)
    await busy.start()
    await idle.start()
    try:
        assert (await idle.reserve("i1", charge(5), time.time(), time.time() + HOLD)).ok
        await idle.settle(Settlement("i1", time.time(), (("usd:day:x:global", 5, 3600),)))
        assert idle._book.counters["usd:day:x:global"].lease > 0
        for _ in range(100):  # renewals come every lease_seconds / 4; an untouched lease goes back at one
            if idle._book.counters["usd:day:x:global"].lease == 0:
                break
            await asyncio.sleep(0.05)
        assert idle._book.counters["usd:day:x:global"].lease == 0
        assert (await busy.reserve("b1", charge(95), time.time(), time.time() + HOLD)).ok  # all that is left
    finally:
        await busy.close()
        await idle.close()


async def test_four_replicas_serve_a_budget_for_fifty_requests_exactly(fake, tmp_path: Path, redis_prefix: str) -> None:
    cost = request_cost()
    replicas = [
        Replica(merged(base_config(fake.base_url, tmp_path), {
            "ledger": {"path": str(tmp_path / f"ledger-{i}.db")},
            "store": {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": redis_prefix},
            "budgets": [{"scope": "global", "usd": usd(50 * cost), "window": "day"}],
        }), tmp_path)
        for i in range(4)
    ]
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(index: int) -> int:
            async with session.post(replicas[index % 4].url + "/v1/chat/completions", json=body) as response:
                await response.read()
                return response.status

        try:
            await asyncio.gather(*(replica.start(session) for replica in replicas))
            statuses = Counter(await asyncio.gather(*(one(i) for i in range(240))))
        finally:
            await asyncio.gather(*(replica.stop() for replica in replicas))
    assert statuses == {200: 50, 429: 190}
    counter = await todays_global_usd(REDIS_URL, redis_prefix)
    assert (int(counter["used"]), int(counter["leased"])) == (50 * cost, 0)
