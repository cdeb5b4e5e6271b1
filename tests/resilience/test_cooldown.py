"""Cooldowns: a deployment that keeps failing sits out, then one request probes it; with Redis, the fleet shares
it. Visible in GET /admin/upstreams and thriftgate_upstream_up; kept across a reload."""

import asyncio
import time

import aiohttp
import pytest
import yaml

from proxy.appkeys import RELOADER, ROUTING
from tests.conftest import base_config, merged
from tests.resilience.conftest import MODEL, deployment, metric, post, routed
from tests.shared import REDIS_URL

COOL = "400ms"


async def admin(proxy) -> dict:
    async with aiohttp.ClientSession() as session, session.get(proxy.url + "/admin/upstreams") as response:
        assert response.status == 200
        return {row["name"]: row for row in (await response.json())["upstreams"]}


async def burst(proxy, count: int) -> list[int]:
    return [status for status, _, _ in await asyncio.gather(*(post(proxy) for _ in range(count)))]


async def until_probed(routing, name: str) -> None:
    """Until the deployment's cooldown is over (its probe may be claimed)."""
    while not routing.health.states[name].probe_claimable(time.time()):
        await asyncio.sleep(0.02)


async def test_a_dead_deployment_cools_down_then_one_request_probes_it(start_routed, primary, secondary) -> None:
    primary.faults(rate=1.0, choices=("503",))
    proxy = await start_routed(deployment("a", primary), deployment("b", secondary), strategy="least_busy")
    routing = proxy.app[ROUTING]
    assert [(await post(proxy))[0] for _ in range(2)] == [200, 200]  # two in a row fail on a, b answers them
    assert primary.served == 2 and (await admin(proxy))["a"]["state"] == "cooling_down"
    assert metric(proxy, "thriftgate_upstream_up", upstream="a") == 0
    assert await burst(proxy, 10) == [200] * 10 and primary.served == 2  # out of rotation: not even tried
    for window in range(3):  # each cooldown window lets exactly one probe through, however many requests come
        await until_probed(routing, "a")
        assert await burst(proxy, 10) == [200] * 10
        assert primary.served == 3 + window
    primary.faults()  # it recovers: the next probe puts it back in rotation
    await until_probed(routing, "a")
    assert await burst(proxy, 10) == [200] * 10 and primary.served == 6
    assert (await admin(proxy))["a"]["state"] == "up" and metric(proxy, "thriftgate_upstream_up", upstream="a") == 1
    assert await burst(proxy, 10) == [200] * 10 and primary.served > 6  # its share again


async def test_every_deployment_cooling_and_no_fallback_is_a_503_saying_when(start_routed, primary) -> None:
    primary.faults(rate=1.0, choices=("500",))
    proxy = await start_routed(deployment("a", primary), retries=0, cooldown={"for": "30s"})
    assert await burst(proxy, 2) == [500, 500]
    status, body, headers = await post(proxy)
    assert status == 503 and body["error"]["code"] == "upstream_cooling_down"
    assert f"'{MODEL}'" in body["error"]["message"] and "probed again at" in body["error"]["message"]
    assert 28 <= int(headers["Retry-After"]) <= 30 and primary.served == 2
    # The headers of the stage's other answers: the model, and that no attempt was made (no deployment answered).
    assert (headers["x-thriftgate-model"], headers["x-thriftgate-attempts"]) == (MODEL, "0")
    assert "x-thriftgate-upstream" not in headers
    record = (await proxy.ledger.recent(1))[0]
    assert (record["status"], record["error"], record["attempt"]) == (503, "upstream_cooling_down", 0)


async def test_one_request_failing_again_and_again_does_not_cool_a_deployment(start_routed, primary) -> None:
    primary.faults(script=["500", "500", "500"])
    proxy = await start_routed(deployment("a", primary), retries=2, cooldown={"after_failures": 2})
    status, _, _ = await post(proxy)
    assert status == 500 and primary.served == 3
    assert (await admin(proxy))["a"]["state"] == "up"
    assert (await post(proxy))[0] == 200


async def test_an_answer_between_failures_ends_their_run(start_routed, primary) -> None:
    primary.faults(script=["500", None, "500", None, "500"])
    proxy = await start_routed(deployment("a", primary), retries=0, cooldown={"after_failures": 2})
    assert [(await post(proxy))[0] for _ in range(5)] == [500, 200, 500, 200, 500]
    assert (await admin(proxy))["a"]["state"] == "up"


async def test_a_reload_keeps_health(start_proxy, fake, primary, secondary, tmp_path) -> None:
    config = merged(base_config(fake.base_url, tmp_path), routed(
        fake, deployment("a", primary), deployment("b", secondary), strategy="least_busy", cooldown={"for": "30s"}))
    path = tmp_path / "thriftgate.yaml"
    path.write_text(yaml.safe_dump(config))
    proxy = await start_proxy(config_path=path)
    primary.faults(rate=1.0, choices=("503",))
    assert [(await post(proxy))[0] for _ in range(2)] == [200, 200]
    config["upstreams"][1]["weight"] = 5  # a change the reload applies at once
    path.write_text(yaml.safe_dump(config))
    changed = await proxy.app[RELOADER].reload()
    assert "upstreams" not in changed["restart_needed"] and "routing" not in changed["restart_needed"]
    shown = await admin(proxy)
    assert shown["a"]["state"] == "cooling_down" and shown["b"]["weight"] == 5
    served = primary.served
    assert await burst(proxy, 4) == [200] * 4 and primary.served == served


@pytest.fixture
def redis_store(redis_prefix: str) -> dict:
    return {"store": {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": redis_prefix}}


async def test_replicas_share_health_through_redis(start_routed, primary, secondary, redis_store) -> None:
    replicas = [await start_routed(deployment("a", primary), deployment("b", secondary), changes=redis_store,
                                   strategy="least_busy", cooldown={"for": "2s"}) for _ in range(2)]
    primary.faults(rate=1.0, choices=("503",))
    assert [(await post(replicas[0]))[0] for _ in range(2)] == [200, 200]  # two failures in a row: a cools down
    assert primary.served == 2
    await asyncio.sleep(1.2)  # replica 1 reads the shared state within a second
    assert (await admin(replicas[1]))["a"]["state"] == "cooling_down"
    assert await burst(replicas[1], 5) == [200] * 5 and primary.served == 2
    await until_probed(replicas[0].app[ROUTING], "a")
    await until_probed(replicas[1].app[ROUTING], "a")
    statuses = await asyncio.gather(burst(replicas[0], 8), burst(replicas[1], 8))
    assert statuses == [[200] * 8] * 2
    assert primary.served == 3  # one probe for the fleet, not one per replica


async def test_a_health_store_that_goes_away_leaves_each_replica_deciding_alone(
    start_routed, primary, secondary, own_redis, redis_prefix
) -> None:
    store = {"store": {"backend": "redis", "redis_url": own_redis.url, "key_prefix": redis_prefix,
                       "on_failure": "open"}}
    proxy = await start_routed(deployment("a", primary), deployment("b", secondary), changes=store,
                               strategy="least_busy")
    await own_redis.stop()
    primary.faults(rate=1.0, choices=("503",))
    assert [(await post(proxy))[0] for _ in range(3)] == [200, 200, 200]
    assert (await admin(proxy))["a"]["state"] == "cooling_down"
