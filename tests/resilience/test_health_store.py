"""The health store contract: the in-process store and the Redis one pass the same suite, step by step."""

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from proxy.control.config import StoreConfig
from proxy.store import StoreUnavailable
from proxy.store.health import CooldownRule, DeploymentHealth, HealthStore, MemoryHealthStore
from proxy.store.health_redis import RedisHealthStore
from tests.processes import RedisServer
from tests.shared import END_OF_MARCH, REDIS_URL

RULE = CooldownRule(after_failures=3, within=60.0, cool_for=30.0)
T = END_OF_MARCH


@pytest.fixture(params=["memory", "redis"])
async def store(request, redis_prefix: str) -> AsyncIterator[HealthStore]:
    made = MemoryHealthStore() if request.param == "memory" else RedisHealthStore(
        StoreConfig(backend="redis", redis_url=REDIS_URL, key_prefix=redis_prefix))
    await made.start()
    yield made
    await made.close()


async def fail(store: HealthStore, at: float, *, probe: bool = False, rest_until: float = 0.0) -> DeploymentHealth:
    return await store.failed("a", at, RULE, probe=probe, rest_until=rest_until)


async def test_a_run_of_failures_cools_a_deployment_down(store: HealthStore) -> None:
    assert (await fail(store, T)).failures == 1
    assert (await fail(store, T + 1)) == DeploymentHealth(failures=2, since=T)
    cooled = await fail(store, T + 2)
    assert cooled == DeploymentHealth(until=T + 32, probe=True) and not cooled.usable(T + 40)
    assert await store.snapshot(("a", "b")) == {"a": cooled}


async def test_an_old_run_starts_again_and_a_success_ends_one(store: HealthStore) -> None:
    await fail(store, T)
    await fail(store, T + 1)
    assert (await fail(store, T + 100)).failures == 1  # the run was older than `within`
    assert await store.succeeded("a", T + 101, probe=False) == DeploymentHealth()
    assert await store.snapshot(("a",)) == {}
    assert (await fail(store, T + 102)).failures == 1


async def test_failures_and_successes_of_requests_sent_before_a_cooldown_change_nothing(store: HealthStore) -> None:
    for second in range(3):
        cooled = await fail(store, T + second)
    assert await fail(store, T + 5) == cooled
    assert await store.succeeded("a", T + 6, probe=False) == cooled
    assert await store.succeeded("a", T + 40, probe=False) == cooled  # over, but only its probe may say so


async def test_one_probe_per_window(store: HealthStore) -> None:
    for second in range(3):
        await fail(store, T + second)
    assert not await store.claim_probe("a", T + 10, 5.0)  # still cooling down
    assert await store.claim_probe("a", T + 33, 5.0)
    assert not await store.claim_probe("a", T + 34, 5.0)  # another request, another replica: not now
    assert await store.claim_probe("a", T + 39, 5.0)  # the first prober vanished: its lease ran out
    again = await fail(store, T + 40, probe=True)  # the probe failed: another window
    assert again == DeploymentHealth(until=T + 70, probe=True)
    assert await store.claim_probe("a", T + 71, 5.0)
    assert await store.succeeded("a", T + 72, probe=True) == DeploymentHealth()
    assert await store.snapshot(("a",)) == {}


async def test_a_retry_after_rests_a_deployment_without_a_probe(store: HealthStore) -> None:
    rested = await fail(store, T, rest_until=T + 20)
    assert rested == DeploymentHealth(until=T + 20, failures=1, since=T)
    assert not rested.usable(T + 19) and rested.usable(T + 20)
    assert not await store.claim_probe("a", T + 21, 5.0)  # nothing to probe: the provider said when
    cooled = await fail(store, T + 21)
    cooled = await fail(store, T + 22, rest_until=T + 100)
    assert cooled == DeploymentHealth(until=T + 100, probe=True)  # the longer of the cooldown and the rest


async def test_deployments_are_apart(store: HealthStore) -> None:
    for second in range(3):
        await fail(store, T + second)
    await store.failed("b", T, RULE, probe=False, rest_until=0.0)
    snapshot = await store.snapshot(("a", "b", "c"))
    assert set(snapshot) == {"a", "b"} and snapshot["b"].failures == 1 and not snapshot["b"].probe


async def test_a_redis_that_refuses_writes_is_a_store_that_is_down(own_redis: RedisServer) -> None:
    """Full (maxmemory under noeviction): a failure cannot be written, and says so as when Redis is out of reach
    (StoreUnavailable: each replica decides alone meanwhile), never Redis's own error up through the request."""
    store = RedisHealthStore(StoreConfig(backend="redis", redis_url=own_redis.url, key_prefix="tg:"))
    admin = redis.Redis.from_url(own_redis.url)
    await store.start()
    try:
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", "1")
        with pytest.raises(StoreUnavailable):
            await fail(store, T)
        assert await store.snapshot(("a",)) == {}  # reads still go through
        await admin.config_set("maxmemory", "0")
        assert (await fail(store, T + 1)).failures == 1
    finally:
        await admin.aclose()
        await store.close()
