"""The real openai SDK, sync and async, through thriftgate to the fake upstream."""

import asyncio
from decimal import Decimal

import openai
import pytest

from tests.conftest import RunningProxy

# USD per 1M tokens, copied by hand from config/pricing.yaml for the hand computations below.
GPT_4O_MINI = {"input": Decimal("0.15"), "cached_input": Decimal("0.075"), "output": Decimal("0.6")}
EMBEDDING_3_SMALL = Decimal("0.02")
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name three rivers."}]


def hand_cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    usd = (
        (prompt - cached) * GPT_4O_MINI["input"]
        + cached * GPT_4O_MINI["cached_input"]
        + completion * GPT_4O_MINI["output"]
    ) / 1_000_000
    return usd.quantize(Decimal("1e-9"))


def client(proxy: RunningProxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-client-key", max_retries=0)


async def test_chat_non_stream_async_prices_to_the_nano_dollar(proxy: RunningProxy, fake) -> None:
    async with client(proxy) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-fake-cached-tokens": "8"}
        )
    completion = raw.parse()
    usage = completion.usage
    assert completion.choices[0].message.content == fake.expected_text(MESSAGES)
    assert usage.prompt_tokens_details.cached_tokens == 8
    cost = Decimal(raw.headers["x-thriftgate-cost-usd"])
    assert cost == hand_cost(usage.prompt_tokens, usage.completion_tokens, cached=8)
    assert raw.headers["x-thriftgate-model"] == "gpt-4o-mini"
    assert int(raw.headers["x-thriftgate-prompt-tokens"]) == usage.prompt_tokens
    assert int(raw.headers["x-thriftgate-completion-tokens"]) == usage.completion_tokens

    record = await proxy.ledger.get(raw.headers["x-thriftgate-request-id"])
    assert record["usage_source"] == "upstream"
    assert (record["prompt_tokens"], record["completion_tokens"], record["cached_prompt_tokens"]) == (
        usage.prompt_tokens, usage.completion_tokens, 8)
    assert Decimal(record["cost_nanos"]) / 10**9 == cost
    assert record["status"] == 200 and record["stream"] in (0, False)


async def test_chat_non_stream_sync_client(proxy: RunningProxy, fake) -> None:
    def call() -> openai.types.chat.ChatCompletion:
        with openai.OpenAI(base_url=proxy.base_url, api_key="sk-client-key", max_retries=0) as sdk:
            return sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    completion = await asyncio.to_thread(call)
    assert completion.choices[0].message.content == fake.expected_text(MESSAGES)
    assert completion.usage.completion_tokens > 0


async def test_response_body_is_byte_identical_to_the_upstream(proxy: RunningProxy, fake) -> None:
    import aiohttp

    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "some_future_field": {"kept": True}}
    headers = {"Authorization": f"Bearer {fake.api_key}", "x-request-id": "fixed"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.base_url}/chat/completions", json=body) as via_proxy:
            proxied = await via_proxy.read()
        async with session.post(f"{fake.base_url}/chat/completions", json=body, headers=headers) as direct:
            straight = await direct.read()
    assert fake.requests[0].body["some_future_field"] == {"kept": True}
    assert _without_volatile(proxied) == _without_volatile(straight)


def _without_volatile(body: bytes) -> bytes:
    """The fake stamps an id and a creation time per answer; everything else must match."""
    import orjson

    obj = orjson.loads(body)
    obj.pop("id"), obj.pop("created")
    return orjson.dumps(obj)


async def test_stream_without_include_usage_hides_the_usage_chunk(proxy: RunningProxy, fake) -> None:
    async with client(proxy) as sdk:
        stream = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == fake.expected_text(MESSAGES)
    assert all(c.usage is None for c in chunks)
    assert fake.requests[-1].body["stream_options"] == {"include_usage": True}

    record = (await proxy.ledger.recent(1))[0]
    assert record["usage_source"] == "upstream" and record["stream"] in (1, True)
    assert record["completion_tokens"] > 0
    assert Decimal(record["cost_nanos"]) / 10**9 == hand_cost(record["prompt_tokens"], record["completion_tokens"])


async def test_stream_with_include_usage_carries_cost(proxy: RunningProxy, fake) -> None:
    async with client(proxy) as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    cost = Decimal(str(usage.model_extra["cost_usd"]))
    assert cost == hand_cost(usage.prompt_tokens, usage.completion_tokens)
    assert (await proxy.ledger.recent(1))[0]["cost_nanos"] == int(cost * 10**9)


async def test_legacy_completions_stream_and_not(proxy: RunningProxy, fake) -> None:
    async with client(proxy) as sdk:
        whole = await sdk.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello")
        stream = await sdk.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello", stream=True)
        streamed = "".join([c.choices[0].text async for c in stream if c.choices])
    assert streamed == whole.choices[0].text
    records = await proxy.ledger.recent(2)
    assert {r["completion_tokens"] for r in records} == {whole.usage.completion_tokens}
    assert all(r["usage_source"] == "upstream" for r in records)


async def test_responses_api_stream_and_not(proxy: RunningProxy, fake) -> None:
    async with client(proxy) as sdk:
        whole = await sdk.responses.create(model="gpt-4o-mini", input="Name three rivers.")
        stream = await sdk.responses.create(model="gpt-4o-mini", input="Name three rivers.", stream=True)
        events = [event async for event in stream]
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert streamed == whole.output_text
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage.output_tokens == whole.usage.output_tokens
    for record in await proxy.ledger.recent(2):
        assert record["completion_tokens"] == whole.usage.output_tokens
        assert Decimal(record["cost_nanos"]) / 10**9 == hand_cost(record["prompt_tokens"], record["completion_tokens"])


async def test_embeddings_are_priced(proxy: RunningProxy) -> None:
    async with client(proxy) as sdk:
        raw = await sdk.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["one sentence", "and another one"]
        )
    result = raw.parse()
    assert len(result.data) == 2
    expected = (result.usage.prompt_tokens * EMBEDDING_3_SMALL / 1_000_000).quantize(Decimal("1e-9"))
    assert Decimal(raw.headers["x-thriftgate-cost-usd"]) == expected > 0


async def test_upstream_without_stream_usage_is_counted_locally(proxy: RunningProxy, fake) -> None:
    async with client(proxy) as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-fake-fault": "no-usage"}
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    record = (await proxy.ledger.recent(1))[0]
    assert record["usage_source"] == "estimated"
    assert record["completion_tokens"] == fake.token_count(text)
    assert record["prompt_tokens"] > 0 and record["cost_nanos"] > 0


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_client_disconnect_mid_stream_is_recorded(start_proxy, handler_cancellation: bool) -> None:
    proxy = await start_proxy(handler_cancellation=handler_cancellation)
    async with client(proxy) as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True,
            extra_headers={"x-fake-words": "200", "x-fake-chunk-delay-ms": "20"},
        )
        received = 0
        async for chunk in stream:
            received += 1
            if received == 5:
                break
        await stream.close()
    for _ in range(100):  # the proxy notices on its next write
        records = await proxy.ledger.recent(1)
        if records and records[0]["client_disconnected"]:
            break
        await asyncio.sleep(0.05)
    record = records[0]
    assert record["client_disconnected"] in (1, True)
    assert record["usage_source"] == "estimated"
    assert 0 < record["completion_tokens"] < 200
    assert record["cost_nanos"] > 0
