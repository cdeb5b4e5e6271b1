"""Budgets and rate limits through a running proxy, on the in-process store and on Redis."""

import asyncio
from decimal import Decimal
from typing import Any

import aiohttp
import openai
import pytest

from proxy.appkeys import BUDGETS, METRICS, STORE
from proxy.accounting.money import format_usd
from proxy.accounting.pricing import PriceTable, default_pricing_path
from proxy.accounting.tokens import TokenCounter
from tests.shared import FakeClock
from tests.conftest import RunningProxy, StartProxy

MESSAGES = [{"role": "user", "content": "hi"}]
MAX_TOKENS = 5  # the fake's reply is longer: it stops at exactly this many tokens, so cost == estimate


def usd(nanos: int) -> str:
    return str(Decimal(nanos) / 10**9)


async def chat(proxy: RunningProxy, model: str = "gpt-4o-mini", headers: dict | None = None,
               **body: Any) -> tuple[int, Any, Any]:
    body = {"model": model, "messages": MESSAGES, "max_tokens": MAX_TOKENS, **body}
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/chat/completions", json=body, headers=headers or {}) as response:
            if body.get("stream") and response.status == 200:
                await response.read()
                return response.status, None, response.headers
            return response.status, await response.json(), response.headers


def request_cost(model: str = "gpt-4o-mini") -> int:
    """What one MESSAGES request with MAX_TOKENS costs: its estimate, since the fake answers MAX_TOKENS exactly."""
    return request_cost_with_output(MAX_TOKENS, model)


def request_cost_with_output(output_tokens: int, model: str = "gpt-4o-mini") -> int:
    prompt = TokenCounter().for_model(model).chat(MESSAGES)
    return PriceTable.load([default_pricing_path()], {}).estimate_nanos(model, prompt, output_tokens)


async def test_usd_budget_refuses_past_the_limit_and_opens_with_the_next_window(
    start_proxy: StartProxy, store_section: dict, clock: FakeClock
) -> None:
    cost = request_cost()
    proxy = await start_proxy(store=store_section, clock=clock,
                              budgets=[{"scope": "global", "usd": usd(3 * cost), "window": "day"}])
    for served in range(1, 4):
        status, _, headers = await chat(proxy)
        assert status == 200
        assert headers["x-thriftgate-budget-remaining-usd"] == format_usd((3 - served) * cost)
        assert headers["x-thriftgate-budget-scope"] == "global"
    status, body, headers = await chat(proxy)
    assert status == 429
    error = body["error"]
    assert error["type"] == "rate_limit_exceeded" and error["code"] == "budget_exceeded"
    assert "global" in error["message"] and "2025-04-01T00:00:00Z" in error["message"]
    assert headers["Retry-After"] == "60"  # the clock stands at 23:59:00 UTC
    assert headers["x-thriftgate-budget-remaining-usd"] == format_usd(0)
    assert headers["x-thriftgate-request-id"].startswith("tg-")
    clock.advance(60)  # midnight: a new day, a new budget
    status, _, headers = await chat(proxy)
    assert status == 200 and headers["x-thriftgate-budget-remaining-usd"] == format_usd(2 * cost)
    await proxy.app[STORE].flush()  # with Redis the gauge follows what Redis holds: once the batch is written
    metrics = proxy.app[METRICS].render().decode()
    assert 'thriftgate_budget_rejections_total{scope_kind="global"} 1.0' in metrics
    assert f'thriftgate_budget_remaining_usd{{scope="global",window="day"}} {2 * cost / 10**9}' in metrics


async def test_a_stream_shows_what_remains_after_its_reservation(
    start_proxy: StartProxy, store_section: dict
) -> None:
    cost = request_cost()
    proxy = await start_proxy(store=store_section,
                              budgets=[{"scope": "global", "usd": usd(10 * cost), "window": "month"}])
    status, _, headers = await chat(proxy, stream=True)
    assert status == 200
    assert headers["x-thriftgate-budget-remaining-usd"] == format_usd(9 * cost)
    # Without max_tokens a request reserves budgets_default_max_output_tokens (4096) of output: too much here.
    status, body, _ = await chat(proxy, max_tokens=None, stream=True)
    assert status == 429 and f"may cost up to ${format_usd(request_cost_with_output(4096))}" in body["error"]["message"]


async def test_concurrent_requests_never_pass_the_budget(start_proxy: StartProxy, store_section: dict) -> None:
    cost = request_cost()
    proxy = await start_proxy(store=store_section,
                              budgets=[{"scope": "global", "usd": usd(20 * cost), "window": "day"}])
    results = await asyncio.gather(*(chat(proxy) for _ in range(60)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] * 20 + [429] * 40
    rows = await proxy.ledger.spend(by="model")
    assert rows[0]["cost_nanos"] == 20 * cost and rows[0]["requests"] == 60


async def test_rate_limit_headers_are_ours_when_our_limit_applies(
    start_proxy: StartProxy, store_section: dict, clock: FakeClock
) -> None:
    proxy = await start_proxy()
    _, body, headers = await chat(proxy)
    assert headers["x-ratelimit-limit-tokens"] == "30000000"  # the fake upstream's own, relayed
    tokens = body["usage"]["prompt_tokens"] + MAX_TOKENS
    proxy = await start_proxy(store=store_section, clock=clock,
                              budgets=[{"scope": "global", "tokens_per_minute": 2 * tokens}])
    status, _, headers = await chat(proxy)
    assert status == 200
    assert (headers["x-ratelimit-limit-tokens"], headers["x-ratelimit-remaining-tokens"]) == (
        str(2 * tokens), str(tokens))
    assert headers["x-ratelimit-reset-tokens"] == "1m0s"
    assert headers["x-ratelimit-limit-requests"] == "10000"  # no request limit of ours: the upstream's stays
    assert "x-thriftgate-budget-remaining-usd" not in headers
    assert (await chat(proxy))[0] == 200
    status, body, headers = await chat(proxy)
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert headers["x-ratelimit-remaining-tokens"] == "0" and headers["Retry-After"] == "60"
    clock.advance(30)
    assert (await chat(proxy))[0] == 429
    clock.advance(30)  # the next minute
    assert (await chat(proxy))[0] == 200


async def test_requests_per_minute(start_proxy: StartProxy, store_section: dict, clock: FakeClock) -> None:
    proxy = await start_proxy(store=store_section, clock=clock,
                              budgets=[{"scope": "user:alice", "requests_per_minute": 2}])
    alice = {"x-thriftgate-user": "alice"}
    assert [(await chat(proxy, headers=alice))[0] for _ in range(3)] == [200, 200, 429]
    status, _, headers = await chat(proxy, headers={"x-thriftgate-user": "bob"})  # not in the scope
    assert status == 200 and headers["x-ratelimit-limit-requests"] == "10000"
    failed, _, _ = await chat(proxy, headers={**alice, "x-fake-fault": "500"})
    assert failed == 429  # still refused: alice's minute is used up
    clock.advance(60)
    failed, _, headers = await chat(proxy, headers={**alice, "x-fake-fault": "500"})
    assert failed == 500 and headers["x-ratelimit-remaining-requests"] == "2"  # a failure is released
    # The upstream's 500 used nothing: released, it leaves alice's two requests of this minute.
    assert [(await chat(proxy, headers=alice))[0] for _ in range(3)] == [200, 200, 429]


async def test_soft_limit_downgrades_then_the_budget_still_holds(
    start_proxy: StartProxy, store_section: dict
) -> None:
    big = request_cost("gpt-4o")
    proxy = await start_proxy(store=store_section, budgets=[{
        "scope": "model:gpt-4o*", "usd": usd(2 * big), "window": "month", "soft_limit": 0.5,
        "downgrade_to": "gpt-4o-mini",
    }, {"scope": "global", "usd": usd(3 * big), "window": "month"}])
    status, body, headers = await chat(proxy, "gpt-4o")
    assert status == 200 and headers["x-thriftgate-model"] == "gpt-4o"
    status, body, headers = await chat(proxy, "gpt-4o")  # at 50% of its budget: the cheaper model answers
    assert status == 200 and headers["x-thriftgate-model"] == "gpt-4o-mini"
    assert body["model"].startswith("gpt-4o-mini")
    record = await proxy.ledger.get(headers["x-thriftgate-request-id"])
    assert (record["requested_model"], record["model"]) == ("gpt-4o", "gpt-4o-mini")


async def test_exhausted_budget_with_downgrade_serves_the_cheaper_model(
    start_proxy: StartProxy, store_section: dict
) -> None:
    big = request_cost("gpt-4o")
    proxy = await start_proxy(store=store_section, budgets=[{
        "scope": "global", "usd": usd(big), "window": "day", "on_exhausted": "downgrade", "downgrade_to": "gpt-4o-mini",
    }])
    models = [(await chat(proxy, "gpt-4o"))[2]["x-thriftgate-model"] for _ in range(3)]
    assert models == ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]


async def test_a_cancelled_stream_settles_what_it_used(start_proxy: StartProxy, store_section: dict) -> None:
    cost = request_cost()
    proxy = await start_proxy(store=store_section, handler_cancellation=True,
                              budgets=[{"scope": "global", "usd": usd(1000 * cost), "window": "day"}])
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "max_tokens": 2000}
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/chat/completions", json=body,
                                headers={"x-fake-words": "400", "x-fake-chunk-delay-ms": "20"}) as response:
            request_id = response.headers["x-thriftgate-request-id"]
            await response.content.readline()
    for _ in range(200):
        record = await proxy.ledger.get(request_id)
        if record is not None:
            break
        await asyncio.sleep(0.02)
    assert record["client_disconnected"] and 0 < record["cost_nanos"], str(dict(record))
    status, _, headers = await chat(proxy)
    # What is left: the budget minus the cut stream's real cost and this request's; nothing still held.
    assert headers["x-thriftgate-budget-remaining-usd"] == format_usd(1000 * cost - record["cost_nanos"] - cost)


async def test_the_openai_sdk_sees_a_rate_limit_error(start_proxy: StartProxy, store_section: dict) -> None:
    proxy = await start_proxy(store=store_section, budgets=[{"scope": "global", "usd": "0.000000001", "window": "day"}])
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0) as sdk:
        with pytest.raises(openai.RateLimitError) as raised:
            await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS)
    assert raised.value.code == "budget_exceeded"
    assert "larger than the whole limit" in raised.value.message


async def test_without_budgets_keys_or_redis_the_stages_do_nothing(start_proxy: StartProxy) -> None:
    proxy = await start_proxy()
    assert proxy.app[BUDGETS] is None
    status, _, headers = await chat(proxy)
    assert status == 200 and "x-thriftgate-budget-remaining-usd" not in headers
