"""The openai SDK through thriftgate to Claude models on the fake Anthropic provider: chat translated both ways."""

import base64
from decimal import Decimal

import aiohttp
import openai
import orjson
import pytest

from tests.conftest import RunningProxy, both_upstreams
from tests.e2e.test_anthropic_sdk import sonnet_cost

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name three rivers."}]
WEATHER = {"type": "function", "function": {"name": "weather", "description": "The weather in a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
PIXEL = "data:image/png;base64," + base64.b64encode(
    bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")).decode()


@pytest.fixture
async def proxy(start_proxy, fake, claude) -> RunningProxy:
    return await start_proxy(upstreams=both_upstreams(fake, claude))


def client(proxy: RunningProxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-client", max_retries=0)


async def test_whole_answer_translated_and_priced_with_cache_reads_and_writes(proxy, claude) -> None:
    async with client(proxy) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="claude-sonnet-4-5", messages=MESSAGES, max_completion_tokens=300, user="u-17",
            extra_headers={"x-fake-cached-tokens": "4", "x-fake-cache-write-tokens": "3",
                           "x-fake-cache-write-1h-tokens": "1"})
    completion = raw.parse()
    sent = claude.requests[-1]
    assert sent.path == "/v1/messages" and sent.headers["anthropic-version"] == "2026-10-21"
    assert sent.headers["x-api-key"] == claude.api_key and "authorization" not in sent.headers
    assert sent.body == {"model": "claude-sonnet-4-5", "system": [{"type": "text", "text": "You are terse."}],
                         "messages": [{"role": "user", "content": [{"type": "text", "text": "Name three rivers."}]}],
                         "max_tokens": 300, "metadata": {"user_id": "u-17"}}
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert len(choice.message.content.split()) == 40  # the fake's default answer
    usage = completion.usage
    assert (usage.prompt_tokens_details.cached_tokens, usage.prompt_tokens_details.cache_write_tokens) == (4, 3)
    uncached = usage.prompt_tokens - 7
    expected = sonnet_cost(uncached, usage.completion_tokens, read=4, written_5m=2, written_1h=1)
    assert Decimal(raw.headers["x-thriftgate-cost-usd"]) == expected
    record = await proxy.ledger.get(raw.headers["x-thriftgate-request-id"])
    assert (record["endpoint"], record["upstream"], record["cache_write_1h_tokens"]) == ("chat", "claude", 1)
    assert Decimal(record["cost_nanos"]) / 10**9 == expected


async def test_stream_with_and_without_the_usage_chunk(proxy, claude) -> None:
    async with client(proxy) as sdk:
        whole = await sdk.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES)
        asked = await sdk.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES, stream=True,
                                                  stream_options={"include_usage": True})
        asked_chunks = [chunk async for chunk in asked]
        plain = await sdk.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES, stream=True)
        plain_chunks = [chunk async for chunk in plain]
    for chunks in (asked_chunks, plain_chunks):
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(c.usage is None for c in plain_chunks)
    final = asked_chunks[-1]
    assert final.choices == [] and final.usage.completion_tokens == whole.usage.completion_tokens
    cost = Decimal(str(final.usage.model_extra["cost_usd"]))
    assert cost == sonnet_cost(final.usage.prompt_tokens, final.usage.completion_tokens)
    records = await proxy.ledger.recent(2)
    assert all(r["stream"] in (1, True) and r["usage_source"] == "upstream" and r["error"] is None for r in records)
    assert records[1]["cost_nanos"] == int(cost * 10**9) == records[0]["cost_nanos"]
    assert "stream_options" not in claude.requests[-1].body and claude.requests[-1].body["stream"] is True


async def test_tools_whole_and_streamed_then_the_tool_result(proxy, claude) -> None:
    async with client(proxy) as sdk:
        called = await sdk.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES, tools=[WEATHER],
                                                   tool_choice={"type": "function", "function": {"name": "weather"}},
                                                   parallel_tool_calls=False)
        stream = await sdk.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES, tools=[WEATHER],
                                                   tool_choice="required", stream=True)
        chunks = [chunk async for chunk in stream]
        call = called.choices[0].message.tool_calls[0]
        followed = await sdk.chat.completions.create(model="claude-sonnet-4-5", tools=[WEATHER], messages=[
            *MESSAGES, called.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}])
    assert called.choices[0].finish_reason == "tool_calls" and call.function.name == "weather"
    assert isinstance(orjson.loads(call.function.arguments)["city"], str)
    first = claude.requests[0].body
    assert first["tools"] == [{"name": "weather", "description": "The weather in a city.",
                               "input_schema": WEATHER["function"]["parameters"]}]
    assert first["tool_choice"] == {"type": "tool", "name": "weather", "disable_parallel_tool_use": True}
    assert claude.requests[1].body["tool_choice"] == {"type": "any"}
    streamed = "".join(c.choices[0].delta.tool_calls[0].function.arguments or ""
                       for c in chunks if c.choices and c.choices[0].delta.tool_calls)
    assert streamed == call.function.arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    turns = claude.requests[2].body["messages"]
    assert turns[1] == {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": "weather",
                                                          "input": orjson.loads(call.function.arguments)}]}
    assert turns[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                     "content": "Sunny, 21 C"}]}
    assert followed.choices[0].finish_reason == "stop"


async def test_images_json_schema_stop_and_effort_are_translated(proxy, claude) -> None:
    schema = {"type": "object", "properties": {"rivers": {"type": "array", "items": {"type": "string"}}},
              "required": ["rivers"], "additionalProperties": False}
    async with client(proxy) as sdk:
        answer = await sdk.chat.completions.create(
            model="claude-sonnet-4-5", stop="\n\n", reasoning_effort="low",
            response_format={"type": "json_schema", "json_schema": {"name": "rivers", "schema": schema}},
            messages=[{"role": "user", "content": [{"type": "text", "text": "Which rivers are in this picture?"},
                                                   {"type": "image_url", "image_url": {"url": PIXEL, "detail": "low"}},
                                                   {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}])
    sent = claude.requests[-1].body
    assert sent["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL.split(",")[1]}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}]
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": schema}, "effort": "low"}
    assert sent["stop_sequences"] == ["\n\n"]
    assert isinstance(orjson.loads(answer.choices[0].message.content)["rivers"], list)


@pytest.mark.parametrize(("options", "field"), [
    ({"n": 2}, "n"),
    ({"temperature": 0.2}, "temperature"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "late"}]}, "messages[1].role"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA==",
                                                                                        "format": "wav"}}]}]},
     "messages[0].content[0].type"),
    ({"extra_body": {"some_future_field": 1}}, "some_future_field"),
])
async def test_what_anthropic_cannot_take_is_a_400_naming_the_field(proxy, claude, options, field) -> None:
    request = {"model": "claude-sonnet-4-5", "messages": MESSAGES, **options}
    async with client(proxy) as sdk:
        with pytest.raises(openai.BadRequestError) as refused:
            await sdk.chat.completions.create(**request)
    assert refused.value.body["param"] == field and refused.value.body["code"] == "untranslatable_parameter"
    assert claude.requests == []


async def test_temperature_goes_through_to_an_upstream_on_the_older_api_version(start_proxy, fake, claude) -> None:
    proxy = await start_proxy(upstreams=both_upstreams(fake, claude, anthropic_version="2023-06-01"))
    async with client(proxy) as sdk:
        await sdk.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES, temperature=0.2, top_p=0.9)
        with pytest.raises(openai.BadRequestError, match="0 to 1"):
            await sdk.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES, temperature=1.5)
    sent = claude.requests[-1]
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert (sent.body["temperature"], sent.body["top_p"]) == (0.2, 0.9)


@pytest.mark.parametrize(("fault", "status", "error"), [
    ("529", 503, openai.InternalServerError), ("429", 429, openai.RateLimitError),
    ("400", 400, openai.BadRequestError)])
async def test_anthropic_errors_reach_an_openai_client_in_its_shape_naming_the_upstream(proxy, fault, status,
                                                                                         error) -> None:
    async with client(proxy) as sdk:
        with pytest.raises(error) as raised:
            await sdk.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES,
                                              extra_headers={"x-fake-fault": fault, "x-fake-retry-after": "3"})
    assert raised.value.status_code == status
    body = raised.value.body
    assert body["type"] == "upstream_error" and "The upstream 'claude' answered" in body["message"]
    if fault == "429":
        assert raised.value.response.headers["retry-after"] == "3" and body["code"] == "rate_limit_error"
    record = (await proxy.ledger.recent(1))[0]
    assert record["status"] == status and record["error"] == f"upstream_{529 if fault == '529' else int(fault)}"


async def test_a_cascade_tries_a_claude_model_for_an_openai_client(start_proxy, fake, claude) -> None:
    proxy = await start_proxy(upstreams=both_upstreams(fake, claude), policies=[
        {"name": "haiku-first", "type": "cascade", "try": "claude-haiku-4-5"}])
    async with client(proxy) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    completion = raw.parse()
    assert completion.model == "claude-haiku-4-5-20251001" and raw.headers["x-thriftgate-model"] == "claude-haiku-4-5"
    assert fake.requests == [] and claude.requests[0].body["model"] == "claude-haiku-4-5"
    record = (await proxy.ledger.recent(1))[0]
    saved = orjson.loads(record["policies"])["haiku-first"]
    assert saved["mechanism"] == "cascade" and saved["saved_nanos"] > 0


async def test_other_openai_endpoints_cannot_reach_claude(proxy, claude) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"{proxy.base_url}/responses", json={"model": "claude-sonnet-4-5", "input": "hi"}) as response:
        body = await response.json()
    assert response.status == 400 and body["error"]["code"] == "untranslatable_request"
    assert claude.requests == []


async def test_a_route_sends_an_openai_stream_to_claude_and_prices_the_saving(start_proxy, fake, claude) -> None:
    proxy = await start_proxy(upstreams=both_upstreams(fake, claude), policies=[
        {"name": "to-haiku", "type": "route", "to": "claude-haiku-4-5"}])
    async with client(proxy) as sdk:
        stream = await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert len(text.split()) == 40 and fake.requests == []
    assert claude.requests[0].body["model"] == "claude-haiku-4-5" and claude.requests[0].body["stream"] is True
    record = (await proxy.ledger.recent(1))[0]
    assert (record["requested_model"], record["model"], record["upstream"]) == ("gpt-4o", "claude-haiku-4-5", "claude")
    assert record["usage_source"] == "upstream" and orjson.loads(record["policies"])["to-haiku"]["mechanism"] == "routing"
