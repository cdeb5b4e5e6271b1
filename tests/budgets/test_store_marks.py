"""Store contract, once-only marks (budget alerts) and notes (Batch API jobs): both stores behave alike;
Redis's are fleet-wide."""

from proxy.control.config import StoreConfig
from proxy.store import Store
from proxy.store.redis import RedisStore
from tests.shared import REDIS_URL


async def test_a_mark_is_had_once_until_it_expires(store: Store) -> None:
    assert await store.mark_once("alert:team:a:day:20250331:0.8", 3600)
    assert not await store.mark_once("alert:team:a:day:20250331:0.8", 3600)
    assert await store.mark_once("alert:team:a:day:20250331:0.95", 3600)  # another threshold
    assert await store.mark_once("alert:team:a:day:20250401:0.8", 3600)  # another window


async def test_an_expired_mark_can_be_had_again(store: Store, monkeypatch) -> None:
    assert await store.mark_once("short", 1)
    if isinstance(store, RedisStore):
        await store._redis.expire(store._key("once:", "short"), 0)  # as if its second had passed
    else:
        import time
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 2)
    assert await store.mark_once("short", 1)


async def test_two_replicas_on_one_redis_share_marks(redis_prefix: str) -> None:
    replicas = [RedisStore(StoreConfig(backend="redis", redis_url=REDIS_URL, key_prefix=redis_prefix)) for _ in range(2)]
    for replica in replicas:
        await replica.start()
    try:
        first = [await replica.mark_once("alert:global:day:x:1.0", 3600) for replica in replicas]
        assert first == [True, False]
    finally:
        for replica in replicas:
            await replica.close()


async def test_notes_are_kept_and_replaced(store: Store) -> None:
    assert await store.get_note("batch:abc") is None
    await store.put_note("batch:abc", '{"accounted": false}', 3600)
    assert await store.get_note("batch:abc") == '{"accounted": false}'
    await store.put_note("batch:abc", '{"accounted": true}', 3600)
    assert await store.get_note("batch:abc") == '{"accounted": true}'


def test_recent_ids_refuse_a_repeat_within_the_window_and_forget_it_after() -> None:
    from proxy.store.holds import RecentIds

    recent = RecentIds(10.0)
    assert recent.add("a", 0.0) and recent.add("b", 5.0)
    assert not recent.add("a", 9.9)  # a replayed settle within the window
    assert recent.add("a", 10.0)  # its window ended: a new request may reuse nothing, but memory is freed
    assert len(recent) == 2  # "a" again and "b"; the first "a" is gone
    for i in range(1000):  # a steady stream: memory stays the window's worth, not the traffic's
        recent.add(f"r{i}", 20.0 + i * 0.1)
    assert len(recent) == 100
