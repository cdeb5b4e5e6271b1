"""Redis stopped and started again under load, or full and refusing writes: closed refuses budgeted requests
with 503, open serves them; either way the proxy reconnects by itself and no spend is lost."""

import asyncio
import logging
from collections import Counter

import aiohttp
import pytest
import redis.asyncio as redis

from proxy.appkeys import STORE
from tests.processes import RedisServer
from tests.budgets.test_budgets import MAX_TOKENS, MESSAGES
from tests.conftest import RunningProxy, StartProxy
from tests.shared import todays_global_usd

PREFIX = "tg:"
# A stopped Redis refuses connections at once: the outage shows without a short timeout, and a busy machine's
# slow answer must not pass for one (a 0.25 s timeout took the store down again after it was back).
TIMEOUT_SECONDS = 2


async def readyz(session: aiohttp.ClientSession, proxy: RunningProxy) -> tuple[int, dict]:
    async with session.get(proxy.url + "/readyz") as response:
        return response.status, await response.json()


async def until_store_reachable(session: aiohttp.ClientSession, proxy: RunningProxy) -> tuple[int, dict]:
    """/readyz once it says the store is reachable again (or after 5 s, whatever it says)."""
    for _ in range(100):
        status, ready = await readyz(session, proxy)
        if ready["store"]["reachable"]:
            break
        await asyncio.sleep(0.05)
    return status, ready


@pytest.fixture(params=["closed", "open"])
async def on_failure(request, caplog: pytest.LogCaptureFixture) -> str:
    """Each test runs with both store.on_failure settings, and sees thriftgate's warnings."""
    caplog.set_level(logging.WARNING, "thriftgate")
    return request.param


@pytest.fixture
async def proxy(start_proxy: StartProxy, own_redis: RedisServer, on_failure: str) -> RunningProxy:
    """A proxy with a global day budget on a Redis of the test's own, trying a down store every 50 ms."""
    return await start_proxy(
        store={"backend": "redis", "redis_url": own_redis.url, "key_prefix": PREFIX, "on_failure": on_failure,
               "retry_seconds": 0.05, "timeout_seconds": TIMEOUT_SECONDS},
        budgets=[{"scope": "global", "usd": 100, "window": "day"}],
    )


async def test_redis_stopped_and_restarted_mid_load_loses_no_spend(
    proxy: RunningProxy, own_redis: RedisServer, on_failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    statuses: Counter = Counter()
    errors: Counter = Counter()
    stopping = asyncio.Event()
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": MAX_TOKENS}

    async def one(session: aiohttp.ClientSession) -> None:
        async with session.post(proxy.base_url + "/chat/completions", json=body,
                                headers={"x-fake-latency-ms": "30"}) as response:
            statuses[response.status] += 1
            if response.status != 200:
                errors[(await response.json())["error"]["code"]] += 1

    async def load(session: aiohttp.ClientSession) -> None:
        while not stopping.is_set():
            await asyncio.gather(*(one(session) for _ in range(8)))

    async with aiohttp.ClientSession() as session:
        traffic = asyncio.create_task(load(session))
        await asyncio.sleep(0.3)
        await own_redis.stop()  # requests in flight reserved before and settle after
        await asyncio.sleep(0.4)
        status, ready = await readyz(session, proxy)
        assert not ready["store"]["reachable"]
        assert (status, ready["status"]) == ((503, "store_unavailable") if on_failure == "closed" else (200, "degraded"))
        await own_redis.start()
        status, ready = await until_store_reachable(session, proxy)
        assert (status, ready["status"], ready["store"]["pending_settlements"]) == (200, "ready", 0)
        await asyncio.sleep(0.3)
        stopping.set()
        await traffic
        async with session.get(proxy.url + "/admin/spend", params={"by": "model"}) as response:
            fleet = await response.json()

    down = f"Redis at {own_redis.url} is unreachable"
    served = "refused" if on_failure == "closed" else "served without a reservation"
    assert f"budgeted requests are {served} (store.on_failure: {on_failure})" in caplog.text and down in caplog.text
    assert f"Redis at {own_redis.url} is reachable again" in caplog.text
    if on_failure == "closed":
        assert statuses[200] > 0 and statuses[503] > 0 and set(statuses) == {200, 503}
        assert set(errors) == {"budget_store_unavailable"}
    else:
        assert set(statuses) == {200}
    ledger = await proxy.ledger.recent(10_000)
    spent = sum(row["cost_nanos"] for row in ledger)
    assert spent > 0 and len(ledger) == sum(statuses.values())
    [row] = fleet["rows"]
    assert fleet["source"] == "fleet" and (row["requests"], row["cost_nanos"]) == (statuses[200], spent)
    counter = await todays_global_usd(own_redis.url, PREFIX)
    assert int(counter["used"]) == spent  # every cent counted


async def test_redis_stopped_mid_load_never_lets_a_budget_be_overspent(
    start_proxy: StartProxy, own_redis: RedisServer
) -> None:
    """A budget for 60 requests, Redis stopped and started again while it runs out: never a 61st."""
    from tests.budgets.test_budgets import request_cost, usd

    cost = request_cost()
    proxy = await start_proxy(
        store={"backend": "redis", "redis_url": own_redis.url, "key_prefix": PREFIX, "retry_seconds": 0.05,
               "timeout_seconds": TIMEOUT_SECONDS},
        budgets=[{"scope": "global", "usd": usd(60 * cost), "window": "day"}],
    )
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    statuses: Counter = Counter()

    async def one(session: aiohttp.ClientSession) -> None:
        async with session.post(proxy.base_url + "/chat/completions", json=body,
                                headers={"x-fake-latency-ms": "20"}) as response:
            await response.read()
            statuses[response.status] += 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session) for _ in range(24)))
        await own_redis.stop()
        await asyncio.gather(*(one(session) for _ in range(8)))  # refused: 503
        await own_redis.start()
        await until_store_reachable(session, proxy)
        for _ in range(6):
            await asyncio.gather(*(one(session) for _ in range(16)))
    assert statuses[200] == 60 and statuses[503] >= 8 and set(statuses) == {200, 429, 503}
    spent = sum(row["cost_nanos"] or 0 for row in await proxy.ledger.recent(10_000))
    assert spent == 60 * cost


async def test_a_full_redis_is_a_store_that_is_down_until_it_takes_writes_again(
    proxy: RunningProxy, own_redis: RedisServer, on_failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis answering but refusing writes (full: maxmemory reached under noeviction) is down as when it cannot be
    reached: budgeted requests get the store.on_failure answer, never a 500, and every settlement is written once
    Redis takes writes again."""
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    admin = redis.Redis.from_url(own_redis.url)
    statuses = []

    async def chat(session: aiohttp.ClientSession) -> dict:
        async with session.post(proxy.base_url + "/chat/completions", json=body) as response:
            statuses.append(response.status)
            return await response.json()

    try:
        async with aiohttp.ClientSession() as session:
            await chat(session)
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", "1")  # every write, the sync script's too: OOM command not allowed
            for _ in range(100):  # served from the lease until the next sync is refused
                await chat(session)
                if not (await readyz(session, proxy))[1]["store"]["reachable"]:
                    break
            status, ready = await readyz(session, proxy)
            assert (status, ready["status"]) == ((503, "store_unavailable") if on_failure == "closed" else
                                                 (200, "degraded"))
            answer = await chat(session)
            if on_failure == "closed":
                assert statuses[-1] == 503 and answer["error"]["code"] == "budget_store_unavailable"
            else:
                assert statuses[-1] == 200
            await admin.config_set("maxmemory", "0")
            status, ready = await until_store_reachable(session, proxy)
            assert (status, ready["status"], ready["store"]["pending_settlements"]) == (200, "ready", 0)
            await chat(session)
            assert statuses[-1] == 200
    finally:
        await admin.aclose()
    assert 500 not in statuses
    await proxy.ledger.flush()
    await proxy.app[STORE].flush()
    served = [row for row in await proxy.ledger.recent(200) if row["status"] == 200]
    counter = await todays_global_usd(own_redis.url, PREFIX)
    assert int(counter["used"]) == sum(row["cost_nanos"] for row in served)  # every settlement written, once
    assert f"Redis at {own_redis.url} refuses writes (OutOfMemoryError: command not allowed" in caplog.text
    assert f"Redis at {own_redis.url} is reachable again" in caplog.text
