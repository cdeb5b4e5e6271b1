"""The official anthropic SDK through thriftgate to the fake Anthropic provider (and, translated, to the fake OpenAI)."""

import asyncio
import hashlib
from decimal import Decimal

import aiohttp
import anthropic
import orjson
import pytest
from openai import AsyncOpenAI

from proxy.accounting.reports import spend_table
from tests.conftest import RunningProxy, both_upstreams

# USD per 1M tokens, copied by hand from config/pricing.yaml (claude-sonnet-4-5, gpt-4o-mini).
SONNET = {"input": Decimal(3), "cached_input": Decimal("0.3"), "cache_write": Decimal("3.75"),
          "cache_write_1h": Decimal(6), "output": Decimal(15)}
GPT_4O_MINI = {"input": Decimal("0.15"), "output": Decimal("0.6")}
SYSTEM = "You are a terse assistant who answers questions about geography and rivers. " * 10
QUESTION = [{"role": "user", "content": "Name three rivers."}]
WEATHER = {"name": "weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def sonnet_cost(uncached: int, output: int, *, read: int = 0, written_5m: int = 0, written_1h: int = 0) -> Decimal:
    usd = (uncached * SONNET["input"] + read * SONNET["cached_input"] + written_5m * SONNET["cache_write"]
           + written_1h * SONNET["cache_write_1h"] + output * SONNET["output"]) / 1_000_000
    return usd.quantize(Decimal("1e-9"))


@pytest.fixture
async def proxy(start_proxy, fake, claude) -> RunningProxy:
    return await start_proxy(upstreams=both_upstreams(fake, claude))


def client(proxy: RunningProxy, **options) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.url, api_key="sk-client", max_retries=0, **options)


async def test_create_prices_input_cache_reads_and_both_cache_writes_to_the_nano_dollar(proxy, claude) -> None:
    async with client(proxy) as sdk:
        raw = await sdk.messages.with_raw_response.create(
            model="claude-sonnet-4-5", max_tokens=200, system=SYSTEM, messages=QUESTION,
            extra_headers={"x-fake-cached-tokens": "60", "x-fake-cache-write-tokens": "50",
                           "x-fake-cache-write-1h-tokens": "20"})
    message = await raw.parse()
    usage = message.usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (60, 50)
    assert (usage.cache_creation.ephemeral_5m_input_tokens, usage.cache_creation.ephemeral_1h_input_tokens) == (30, 20)
    expected = sonnet_cost(usage.input_tokens, usage.output_tokens, read=60, written_5m=30, written_1h=20)
    assert Decimal(raw.headers["x-thriftgate-cost-usd"]) == expected
    assert raw.headers["x-thriftgate-model"] == "claude-sonnet-4-5"

    record = await proxy.ledger.get(raw.headers["x-thriftgate-request-id"])
    assert record["endpoint"] == "messages" and record["upstream"] == "claude" and record["usage_source"] == "upstream"
    assert record["prompt_tokens"] == usage.input_tokens + 60 + 50
    assert (record["cached_prompt_tokens"], record["cache_write_tokens"], record["cache_write_1h_tokens"]) == (60, 50, 20)
    assert Decimal(record["cost_nanos"]) / 10**9 == expected
    async with aiohttp.ClientSession() as session, session.get(
            f"{proxy.url}/admin/requests/{raw.headers['x-thriftgate-request-id']}") as admin:
        shown = await admin.json()
    assert (shown["cached_prompt_tokens"], shown["cache_write_tokens"], shown["cache_write_1h_tokens"]) == (60, 50, 20)


async def test_stream_reads_usage_from_message_start_and_message_delta(proxy, claude) -> None:
    async with client(proxy) as sdk:
        whole = await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=200, messages=QUESTION)
        async with sdk.messages.stream(model="claude-sonnet-4-5", max_tokens=200, messages=QUESTION,
                                       extra_headers={"x-fake-cached-tokens": "3"}) as stream:
            events = [event.type async for event in stream]
            final = await stream.get_final_message()
    assert final.content[0].text == whole.content[0].text
    assert events[0] == "message_start" and events[-1] == "message_stop" and "message_delta" in events
    record = (await proxy.ledger.recent(1))[0]
    assert record["stream"] in (1, True) and record["usage_source"] == "upstream" and record["error"] is None
    assert (record["prompt_tokens"], record["cached_prompt_tokens"]) == (final.usage.input_tokens + 3, 3)
    assert record["completion_tokens"] == final.usage.output_tokens == whole.usage.output_tokens
    expected = sonnet_cost(final.usage.input_tokens, final.usage.output_tokens, read=3)
    assert Decimal(record["cost_nanos"]) / 10**9 == expected


async def test_count_tokens_is_proxied_to_anthropic_and_free(proxy, claude) -> None:
    async with client(proxy) as sdk:
        counted = await sdk.messages.count_tokens(model="claude-sonnet-4-5", system=SYSTEM, messages=QUESTION)
        created = await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=5, system=SYSTEM, messages=QUESTION)
    assert counted.input_tokens == created.usage.input_tokens > 0
    assert claude.requests[0].path == "/v1/messages/count_tokens"
    record = (await proxy.ledger.recent(2))[1]
    assert (record["endpoint"], record["prompt_tokens"], record["cost_nanos"]) == ("count_tokens", 0, 0)


async def test_count_tokens_against_an_openai_model_is_a_local_estimate(proxy, fake) -> None:
    async with client(proxy) as sdk:
        counted = await sdk.messages.count_tokens(model="gpt-4o-mini", messages=QUESTION)
    assert 0 < counted.input_tokens < 20
    assert fake.requests == []
    record = (await proxy.ledger.recent(1))[0]
    assert (record["usage_source"], record["cost_nanos"]) == ("estimated", 0)


async def test_tools_whole_streamed_and_a_tool_result_sent_back(proxy, claude) -> None:
    async with client(proxy) as sdk:
        called = await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=QUESTION,
                                           tools=[WEATHER], tool_choice={"type": "tool", "name": "weather"})
        async with sdk.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=QUESTION,
                                       tools=[WEATHER], tool_choice={"type": "any"}) as stream:
            streamed = await stream.get_final_message()
        use = called.content[0]
        answer = await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=100, tools=[WEATHER], messages=[
            *QUESTION, {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21 C"}]}])
    assert use.type == "tool_use" and use.name == "weather" and isinstance(use.input["city"], str)
    assert called.stop_reason == streamed.stop_reason == "tool_use"
    assert streamed.content[0].input == use.input  # the streamed input_json_delta pieces add up
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"
    assert claude.requests[-1].body["messages"][2]["content"][0]["tool_use_id"] == use.id
    assert all(r["cost_nanos"] > 0 for r in await proxy.ledger.recent(3))


async def test_bytes_pass_through_unchanged_with_the_proxy_key_replaced(start_proxy, fake, claude) -> None:
    proxy = await start_proxy(upstreams=both_upstreams(fake, claude), auth={"required": True, "keys": [
        {"id": "coder", "team": "agents", "sha256": hashlib.sha256(b"tg-agent-key").hexdigest()}]})
    raw = orjson.dumps({"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": QUESTION, "future_field": [1, 2]})
    headers = {"x-api-key": "tg-agent-key", "anthropic-version": "2023-06-01", "anthropic-beta": "some-beta-2026-01-01",
               "content-type": "application/json"}
    async with aiohttp.ClientSession() as session, session.post(f"{proxy.url}/v1/messages", data=raw,
                                                                headers=headers) as response:
        answer = await response.json()
    assert response.status == 200 and answer["type"] == "message"
    sent = claude.requests[-1]
    assert sent.body == orjson.loads(raw)
    assert (sent.headers["anthropic-version"], sent.headers["anthropic-beta"]) == ("2023-06-01", "some-beta-2026-01-01")
    assert sent.headers["x-api-key"] == claude.api_key and "authorization" not in sent.headers
    record = (await proxy.ledger.recent(1))[0]
    assert (record["key_id"], record["team"]) == ("coder", "agents")


async def test_a_wrong_key_is_refused_in_anthropics_error_shape(start_proxy, fake, claude) -> None:
    proxy = await start_proxy(upstreams=both_upstreams(fake, claude), auth={"required": True})
    async with client(proxy) as sdk:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=QUESTION)
    assert refused.value.body["error"]["type"] == "authentication_error"
    assert claude.requests == []


@pytest.mark.parametrize(("body", "field"), [
    ({"model": "claude-sonnet-4-5", "messages": QUESTION}, "max_tokens"),
    ({"model": "claude-sonnet-4-5", "max_tokens": 0, "messages": QUESTION}, "max_tokens"),
    ({"max_tokens": 5, "messages": QUESTION}, "model"),
    ({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
    ({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": [{"text": "x"}]}]},
     "messages.0.content.0"),
    ({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": QUESTION, "stream": "yes"}, "stream"),
    ({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": "hello"}, "messages"),
])
async def test_malformed_bodies_are_400s_in_anthropics_shape_naming_the_field(proxy, claude, body, field) -> None:
    async with aiohttp.ClientSession() as session, session.post(f"{proxy.url}/v1/messages", json=body) as response:
        error = await response.json()
    assert response.status == 400
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(f"{field}: ")
    assert claude.requests == []


async def test_not_json_and_an_unknown_route_are_anthropic_shaped(proxy) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{proxy.url}/v1/messages", data=b"{not json") as response:
            assert response.status == 400
            assert (await response.json())["error"]["type"] == "invalid_request_error"
        async with session.get(f"{proxy.url}/nope", headers={"anthropic-version": "2026-10-21"}) as response:
            assert response.status == 404
            assert (await response.json())["error"]["type"] == "not_found_error"
        async with session.get(f"{proxy.url}/v1/messages/batches/nope") as response:  # paid, unpriced: refused
            assert response.status == 403
            error = (await response.json())["error"]
            assert error["type"] == "permission_error" and "server.unpriced_paid_paths" in error["message"]


async def test_message_batches_pass_through_when_the_operator_allows_them(start_proxy, fake, claude) -> None:
    proxy = await start_proxy(upstreams=both_upstreams(fake, claude),
                              server={"unpriced_paid_paths": ["/v1/messages/batches/**"]})
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{proxy.url}/v1/messages/batches/nope") as response:
            assert response.status == 404  # the fake Anthropic's: it was passed through
            assert (await response.json())["error"]["type"] == "not_found_error"
    assert [request.path for request in claude.requests] == ["/v1/messages/batches/nope"]


@pytest.mark.parametrize(("fault", "error"), [("529", anthropic.OverloadedError), ("429", anthropic.RateLimitError),
                                              ("500", anthropic.InternalServerError)])
async def test_upstream_errors_reach_an_anthropic_client_as_they_came(proxy, fault, error) -> None:
    async with client(proxy) as sdk:
        with pytest.raises(error) as raised:
            await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=QUESTION,
                                      extra_headers={"x-fake-fault": fault, "x-fake-retry-after": "7"})
    if fault == "429":
        assert raised.value.response.headers["retry-after"] == "7"
    record = (await proxy.ledger.recent(1))[0]
    assert record["error"] == f"upstream_{raised.value.status_code}" and record["cost_nanos"] == 0


async def test_a_stream_the_client_abandons_keeps_its_exact_input_and_estimates_its_output(start_proxy, fake,
                                                                                           claude) -> None:
    proxy = await start_proxy(upstreams=both_upstreams(fake, claude))
    async with client(proxy) as sdk:
        whole = await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=400, system=SYSTEM, messages=QUESTION,
                                          extra_headers={"x-fake-words": "200"})
        async with sdk.messages.stream(model="claude-sonnet-4-5", max_tokens=400, system=SYSTEM, messages=QUESTION,
                                       extra_headers={"x-fake-words": "200", "x-fake-chunk-delay-ms": "20",
                                                      "x-fake-cached-tokens": "40"}) as stream:
            received = 0
            async for _ in stream:
                received += 1
                if received == 8:
                    break
    for _ in range(100):  # the proxy notices on its next write
        record = (await proxy.ledger.recent(1))[0]
        if record["client_disconnected"]:
            break
        await asyncio.sleep(0.05)
    assert record["client_disconnected"] in (1, True) and record["usage_source"] == "estimated"
    assert (record["prompt_tokens"], record["cached_prompt_tokens"]) == (whole.usage.input_tokens, 40)
    assert 0 < record["completion_tokens"] < whole.usage.output_tokens
    assert record["cost_nanos"] == int(sonnet_cost(whole.usage.input_tokens - 40, record["completion_tokens"],
                                                   read=40) * 10**9)


async def test_an_error_event_mid_stream_is_relayed_and_recorded(proxy) -> None:
    async with client(proxy) as sdk:
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            async with sdk.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=QUESTION,
                                           extra_headers={"x-fake-fault": "stream-error"}) as stream:
                await stream.get_final_message()
    record = (await proxy.ledger.recent(1))[0]
    assert record["error"] == "upstream_stream_error" and record["usage_source"] == "estimated"
    assert record["truncated"] is True  # its own error event ended it: thriftgate adds none
    assert record["prompt_tokens"] > 0 and record["cost_nanos"] > 0


async def test_an_openai_model_answers_an_anthropic_client_whole_streamed_and_with_tools(proxy, fake) -> None:
    async with client(proxy) as sdk:
        whole = await sdk.messages.create(model="gpt-4o-mini", max_tokens=100, system="Be terse.", messages=QUESTION)
        async with sdk.messages.stream(model="gpt-4o-mini", max_tokens=100, system="Be terse.",
                                       messages=QUESTION) as stream:
            streamed = await stream.get_final_message()
        async with sdk.messages.stream(model="gpt-4o-mini", max_tokens=100, messages=QUESTION, tools=[WEATHER],
                                       tool_choice={"type": "any"}) as stream:
            called = await stream.get_final_message()
    expected = fake.expected_text([{"role": "system", "content": "Be terse."}, *QUESTION], model="gpt-4o-mini")
    assert whole.content[0].text == streamed.content[0].text == expected
    assert whole.stop_reason == streamed.stop_reason == "end_turn"
    assert whole.usage.input_tokens == streamed.usage.input_tokens > 0
    assert called.stop_reason == "tool_use" and called.content[0].name == "weather"
    assert isinstance(called.content[0].input["city"], str)
    sent = fake.requests[0].body
    assert sent["messages"][0] == {"role": "system", "content": "Be terse."} and sent["max_completion_tokens"] == 100
    assert fake.requests[2].body["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    for record in await proxy.ledger.recent(3):
        assert record["upstream"] == "fake" and record["usage_source"] == "upstream"
        cost = (record["prompt_tokens"] * GPT_4O_MINI["input"] + record["completion_tokens"] * GPT_4O_MINI["output"])
        assert record["cost_nanos"] == int(cost * 1000)


async def test_what_openai_cannot_take_is_a_400_naming_the_field(proxy, fake) -> None:
    async with client(proxy) as sdk:
        with pytest.raises(anthropic.BadRequestError, match="thinking"):
            await sdk.messages.create(model="gpt-4o-mini", max_tokens=2000, messages=QUESTION,
                                      thinking={"type": "enabled", "budget_tokens": 1024})
    assert fake.requests == []


async def test_spend_splits_input_into_uncached_cache_reads_and_writes_for_both_providers(proxy) -> None:
    async with client(proxy) as sdk:
        claude = await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=50, system=SYSTEM, messages=QUESTION,
                                           extra_headers={"x-fake-cached-tokens": "60",
                                                          "x-fake-cache-write-tokens": "50"})
    async with AsyncOpenAI(base_url=proxy.base_url, api_key="sk-client", max_retries=0) as sdk:
        gpt = await sdk.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, extra_headers={
            "x-fake-cached-tokens": "4", "x-fake-cache-write-tokens": "2"})
    table = spend_table("model", await proxy.ledger.spend(by="model"))
    header, *lines = table.splitlines()
    assert header.split()[:7] == ["model", "requests", "input_tok", "uncached_in", "cache_read", "cache_write",
                                  "output_tok"]
    rows = {line.split()[0]: line.split()[2:7] for line in lines}
    assert rows["claude-sonnet-4-5"] == [str(claude.usage.input_tokens + 110), str(claude.usage.input_tokens), "60",
                                         "50", str(claude.usage.output_tokens)]
    assert rows["gpt-4o-mini"] == [str(gpt.usage.prompt_tokens), str(gpt.usage.prompt_tokens - 6), "4", "2",
                                   str(gpt.usage.completion_tokens)]


async def test_budgets_and_policies_apply_to_the_messages_endpoint(start_proxy, fake, claude) -> None:
    proxy = await start_proxy(upstreams=both_upstreams(fake, claude), policies=[
        {"type": "concise"}, {"type": "cap", "max_tokens": 64}],
        budgets=[{"scope": "user:capped", "usd": "0.000001", "window": "day"}])
    async with client(proxy) as sdk:
        answer = await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=500, system="You know rivers.",
                                           messages=QUESTION)
        with pytest.raises(anthropic.RateLimitError) as refused:
            await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=500, messages=QUESTION,
                                      extra_headers={"x-thriftgate-user": "capped"})
    sent = claude.requests[0].body
    assert sent["system"] == "You know rivers.\n\nAnswer concisely." and sent["max_tokens"] == 64
    assert len(answer.content[0].text.split()) == 10  # the fake answers a concise request in a quarter of the words
    assert refused.value.body["error"]["type"] == "rate_limit_error" and "user:capped" in refused.value.message
    assert int(refused.value.response.headers["retry-after"]) > 0 and len(claude.requests) == 1
    record = (await proxy.ledger.recent(2))[1]
    assert orjson.loads(record["policies"]).keys() == {"concise", "cap"}
