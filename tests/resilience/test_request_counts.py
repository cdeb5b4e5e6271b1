"""A request retried after a billed attempt is one request everywhere that counts requests (the ledger's spend,
/admin/spend from the ledger and from the fleet's totals, /ui, a requests-per-minute budget), while the dollars
are both attempts'."""

import asyncio

import aiohttp
import openai

from tests.observability.test_ui import PageText
from tests.resilience.conftest import CHAT, MODEL, deployment, rows
from tests.shared import REDIS_URL


async def stream_once(base_url: str) -> dict[str, str]:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-x", max_retries=0) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(**CHAT, stream=True)
        [_ async for _ in raw.parse()]
    return dict(raw.headers)


async def test_a_billed_attempt_adds_dollars_not_a_request(start_routed, primary, secondary, redis_prefix) -> None:
    primary.faults(script=["stall"])  # accepted, then no first token: its prompt is billed
    proxy = await start_routed(deployment("a", primary), deployment("b", secondary), strategy="least_busy",
                               changes={"store": {"backend": "redis", "redis_url": REDIS_URL,
                                                  "key_prefix": redis_prefix}})
    headers = await stream_once(proxy.base_url)
    failed, answered = await rows(proxy, headers["x-thriftgate-request-id"])
    assert failed["cost_nanos"] > 0 and answered["cost_nanos"] > 0
    paid = failed["cost_nanos"] + answered["cost_nanos"]
    async with aiohttp.ClientSession() as session:
        async def spend(source: str) -> dict:
            async with session.get(proxy.url + "/admin/spend", params={"by": "day", "source": source}) as response:
                assert response.status == 200, await response.text()
                [row] = (await response.json())["rows"]
                return row

        for _ in range(100):  # the fleet's totals are written to Redis within a sync interval
            fleet = await spend("fleet")
            if fleet["cost_nanos"] == paid:
                break
            await asyncio.sleep(0.05)
        ledger = await spend("ledger")
        async with session.get(proxy.url + "/ui") as response:
            page = PageText(await response.text())
    assert (ledger["requests"], ledger["cost_nanos"], ledger["unpriced_requests"]) == (1, paid, 0)
    assert (fleet["requests"], fleet["cost_nanos"], fleet["unpriced_requests"]) == (1, paid, 0)
    by_model = {row[0]: row for row in page.tables["by-model"][1:]}
    assert by_model[MODEL][4] == "1"  # the Requests column
    assert len(page.tables["recent"][1:]) == 1  # "Last requests": the request, not its failed attempt


async def test_a_billed_attempt_is_not_a_request_of_a_requests_budget(start_routed, primary, secondary) -> None:
    primary.faults(script=["stall"])
    proxy = await start_routed(deployment("a", primary), deployment("b", secondary), strategy="least_busy",
                               changes={"budgets": [{"scope": "global", "requests_per_minute": 10}]})
    first = await stream_once(proxy.base_url)
    assert first["x-thriftgate-attempts"] == "2"
    second = await stream_once(proxy.base_url)
    assert second["x-thriftgate-attempts"] == "1"
    assert second["x-ratelimit-remaining-requests"] == "8"  # two requests made, whatever their attempts
