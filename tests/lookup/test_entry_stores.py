"""The entry stores: the in-process one and Redis pass the same contract; Redis also keeps replicas'
vector indexes in sync, ignores corrupt or foreign entries, and degrades to misses when it is down."""

import asyncio
import inspect
from collections import Counter
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
import redis.asyncio as redis

from proxy.lookup.entries import Entry, EntryStore, LookupUnavailable, MemoryEntries, decode, encode
from proxy.control.config import StoreConfig
from proxy.store.lookup_redis import RedisEntries, connect
from tests.budgets.conftest import REDIS_URL
from tests.processes import RedisServer

NOW = 1_000_000.0
DIM = 8


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def entry(entry_id: str, *, kind: str = "semantic", owner: str = "faq", scope: str = "team:a", partition: str = "p1",
          seed: int = 0, expires: float | None = NOW + 60) -> Entry:
    return Entry(id=entry_id, kind=kind, owner=owner, scope=scope, partition=entry_id if kind == "exact" else partition,
                 question="" if kind == "exact" else f"question {entry_id}",
                 vector=None if kind == "exact" else vector(seed), model="gpt-4o-mini-2024-07-18",
                 choices=[{"message": {"role": "assistant", "content": f"answer {entry_id}"}, "finish_reason": "stop"}],
                 completion_tokens=3, created=NOW, expires=expires)


def redis_entries(url: str, prefix: str, ignored: Counter, **options) -> RedisEntries:
    client = connect(StoreConfig(backend="redis", redis_url=url, timeout_seconds=0.5))
    return RedisEntries(client, prefix=prefix, ignored=lambda reason: ignored.update([reason]), owns_client=True,
                        retry_seconds=0.05, block_ms=100, **options)


async def until(condition: Callable[[], object], seconds: float = 5.0) -> None:
    """The follower applies the log in the background: wait (bounded) for it to catch up."""
    for _ in range(int(seconds / 0.02)):
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


@pytest.fixture
def ignored() -> Counter:
    return Counter()


@pytest.fixture(params=["memory", "redis"])
async def entries(request: pytest.FixtureRequest, redis_prefix: str, ignored: Counter) -> AsyncIterator[EntryStore]:
    store = MemoryEntries() if request.param == "memory" else redis_entries(REDIS_URL, redis_prefix, ignored)
    await store.start()
    if isinstance(store, RedisEntries):
        await until(lambda: store._up)
    yield store
    await store.close()


async def test_exact_entries_are_found_by_id_until_they_expire(entries: EntryStore) -> None:
    await entries.put(entry("x1", kind="exact"), 100, NOW)
    found = await entries.get("x1", NOW + 59)
    assert found is not None and found.text() == "answer x1" and found.kind == "exact"
    assert await entries.get("x1", NOW + 60) is None
    assert await entries.get("nothing", NOW) is None


async def test_nearest_looks_only_inside_the_partition(entries: EntryStore) -> None:
    for i in range(5):
        await entries.put(entry(f"s{i}", seed=i), 100, NOW)
    await entries.put(entry("other", seed=0, partition="p2"), 100, NOW)
    found = await entries.nearest("p1", vector(2), 3, NOW)
    assert [e.id for e, _ in found][0] == "s2" and found[0][1] == pytest.approx(1.0, abs=1e-5)
    assert "other" not in [e.id for e, _ in await entries.nearest("p1", vector(0), 10, NOW)]
    assert [e.id for e, _ in await entries.nearest("p2", vector(0), 10, NOW)] == ["other"]
    assert await entries.nearest("p1", vector(2), 3, NOW + 61) == []  # all expired


async def test_past_the_limit_the_entries_closest_to_expiry_go(entries: EntryStore) -> None:
    for i in range(5):
        await entries.put(entry(f"s{i}", seed=i, expires=NOW + 10 + i), 3, NOW)
    assert [await entries.get(f"s{i}", NOW) is not None for i in range(5)] == [False, False, True, True, True]
    assert {e.id for e, _ in await entries.nearest("p1", vector(0), 5, NOW)} == {"s2", "s3", "s4"}
    await entries.put(entry("other-owner", owner="faq2"), 3, NOW)  # the limit is per owner
    assert await entries.get("s2", NOW) is not None


async def test_delete_scope_removes_that_tenant_only(entries: EntryStore) -> None:
    await entries.put(entry("a1", seed=1), 100, NOW)
    await entries.put(entry("a2", kind="exact"), 100, NOW)
    await entries.put(entry("b1", seed=1, scope="team:b", partition="p-b"), 100, NOW)
    assert await entries.delete_scope("team:a") == 2
    assert await entries.get("a2", NOW) is None and await entries.nearest("p1", vector(1), 5, NOW) == []
    assert [e.id for e, _ in await entries.nearest("p-b", vector(1), 5, NOW)] == ["b1"]


async def test_a_replaced_entry_is_found_once_with_its_new_answer(entries: EntryStore) -> None:
    await entries.put(entry("s1", seed=1), 100, NOW)
    newer = entry("s1", seed=1)
    newer.choices[0]["message"]["content"] = "newer"
    await entries.put(newer, 100, NOW)
    found = await entries.nearest("p1", vector(1), 5, NOW)
    assert [(e.id, e.text()) for e, _ in found] == [("s1", "newer")]


def test_the_wire_form_round_trips_and_rejects_what_it_did_not_write() -> None:
    original = entry("s1", seed=4)
    back = decode(encode(original))
    assert back is not None and back.id == "s1" and np.allclose(back.vector, original.vector)
    assert back.choices == original.choices and back.expires == original.expires
    for bad in (b"not json", b"{}", encode(original).replace(b'"format":1', b'"format":9'),
                encode(original).replace(b'"kind":"semantic"', b'"kind":"exact"'),  # exact with a vector
                encode(original).replace(b'"vector":"', b'"vector":"!!')):
        assert decode(bad) is None


async def test_corrupt_and_foreign_entries_in_redis_are_never_served(redis_prefix: str, ignored: Counter) -> None:
    store = redis_entries(REDIS_URL, redis_prefix, ignored)
    await store.start()
    await until(lambda: store._up)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        await store.put(entry("s1", seed=1), 100, NOW)
        await store.put(entry("x1", kind="exact"), 100, NOW)
        # The follower reads what the log announces: let it read these two before they are spoiled.
        last_change = (await client.xrevrange(f"{redis_prefix}lookup:log", count=1))[0][0].decode()
        await until(lambda: store._log_id == last_change)
        await client.set(f"{redis_prefix}lookup:e:x1", b"\x00garbage")
        await client.set(f"{redis_prefix}lookup:e:s1", encode(entry("s9", seed=1)))  # another entry under s1's key
        assert await store.get("x1", NOW) is None
        assert await store.nearest("p1", vector(1), 5, NOW) == []
        assert ignored == Counter({"corrupt": 1, "foreign": 1})
    finally:
        await client.aclose()
        await store.close()


async def test_replicas_follow_each_others_writes_and_deletes(redis_prefix: str, ignored: Counter) -> None:
    one, two = redis_entries(REDIS_URL, redis_prefix, ignored), redis_entries(REDIS_URL, redis_prefix, ignored)
    await one.start()
    await until(lambda: one._up)
    await one.put(entry("before", seed=5), 100, NOW)  # written before the second replica starts: loaded
    await two.start()
    try:
        await until(lambda: two._up)
        await one.put(entry("after", seed=6), 100, NOW)

        async def two_sees(entry_id: str, seed: int) -> bool:
            return [e.id for e, _ in await two.nearest("p1", vector(seed), 1, NOW)] == [entry_id]

        await until(lambda: two_sees("before", 5))
        await until(lambda: two_sees("after", 6))
        await one.delete_scope("team:a")
        await until(lambda: not two._partitions.search("p1", vector(6), 5))
    finally:
        await one.close()
        await two.close()


async def test_a_redis_outage_is_a_miss_and_its_return_reloads_the_index(own_redis: RedisServer,
                                                                          ignored: Counter) -> None:
    store = redis_entries(own_redis.url, "tg:", ignored)
    await store.start()
    try:
        await until(lambda: store._up)
        await store.put(entry("s1", seed=1), 100, NOW)
        await own_redis.stop()
        with pytest.raises(LookupUnavailable):
            await store.get("s1", NOW)
        with pytest.raises(LookupUnavailable):
            await store.nearest("p1", vector(1), 5, NOW)
        with pytest.raises(LookupUnavailable):
            await store.put(entry("s2", seed=2), 100, NOW)
        await own_redis.start()  # its append-only file brings s1 back
        await until(lambda: store._up)
        assert [e.id for e, _ in await store.nearest("p1", vector(1), 5, NOW)] == ["s1"]
    finally:
        await store.close()


async def test_a_redis_that_refuses_writes_is_down_too_and_back_once_it_takes_them(own_redis: RedisServer,
                                                                                   ignored: Counter) -> None:
    """Full (maxmemory under noeviction): a put is LookupUnavailable (a miss, never a failed request), as when
    Redis is out of reach, and the store loads its index again once Redis takes writes."""
    store = redis_entries(own_redis.url, "tg:", ignored)
    admin = redis.Redis.from_url(own_redis.url)
    await store.start()
    try:
        await until(lambda: store._up)
        await store.put(entry("s1", seed=1), 100, NOW)
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", "1")
        with pytest.raises(LookupUnavailable):
            await store.put(entry("s2", seed=2), 100, NOW)
        await admin.config_set("maxmemory", "0")
        await until(lambda: store._up)
        await store.put(entry("s2", seed=2), 100, NOW)
        assert [e.id for e, _ in await store.nearest("p1", vector(2), 1, NOW)] == ["s2"]
    finally:
        await admin.aclose()
        await store.close()
