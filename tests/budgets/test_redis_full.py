"""Redis that answers but refuses writes (full: maxmemory reached under noeviction, say): the store counts as down,
as when Redis cannot be reached. Budgeted requests get the store.on_failure answer (closed: a 503 saying so;
open: served), never a 500; settlements wait in memory and are all written once Redis takes writes again."""

import logging

import aiohttp
import pytest
import redis.asyncio as redis

from proxy.appkeys import STORE
from tests.budgets.test_budgets import MAX_TOKENS, MESSAGES
from tests.budgets.test_redis_outage import readyz, until_store_reachable
from tests.conftest import StartProxy
from tests.processes import RedisServer
from tests.shared import todays_global_usd

PREFIX = "tg:"


@pytest.mark.parametrize("on_failure", ["closed", "open"])
async def test_a_full_redis_is_a_store_that_is_down_until_it_takes_writes_again(
    start_proxy: StartProxy, own_redis: RedisServer, on_failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "thriftgate")
    proxy = await start_proxy(
        store={"backend": "redis", "redis_url": own_redis.url, "key_prefix": PREFIX, "on_failure": on_failure,
               "retry_seconds": 0.05, "timeout_seconds": 2},
        budgets=[{"scope": "global", "usd": 100, "window": "day"}],
    )
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
