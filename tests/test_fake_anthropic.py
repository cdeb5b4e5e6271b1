"""The fake Anthropic provider, seen through the real anthropic SDK and raw HTTP: the wire format, the
checks in their order, the prompt cache, the faults. If the SDK parses it, the proxy meets the real thing."""

from collections.abc import AsyncIterator

import aiohttp
import anthropic
import pytest

from tests.fake.prompt_cache import PromptCache
from tests.fake_upstream import FakeUpstream, fake_anthropic

QUESTION = [{"role": "user", "content": "Name three rivers."}]
LONG = "alpha beta gamma delta epsilon zeta eta theta iota kappa " * 120  # ~1,200 tokens


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with fake_anthropic() as fake:
        yield fake


def sdk(fake: FakeUpstream, **options) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=fake.url, api_key=fake.api_key, max_retries=0, **options)


async def post(fake: FakeUpstream, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.post(f"{fake.base_url}/messages", json=body,
                                                                headers=headers) as response:
        return response.status, await response.json()


async def test_a_message_and_its_stream_say_the_same_with_the_real_event_sequence(upstream) -> None:
    async with sdk(upstream) as client:
        whole = await client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=QUESTION)
        async with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=QUESTION) as stream:
            events = [event async for event in stream]
            final = await stream.get_final_message()
    assert whole.model == "claude-sonnet-4-5-20250929" and whole.stop_reason == "end_turn"
    assert final.content[0].text == whole.content[0].text and final.usage.output_tokens == whole.usage.output_tokens
    kinds = [event.type for event in events if event.type in (
        "message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop")]
    assert kinds == ["message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop"]
    assert events[0].message.usage.output_tokens == 1  # message_start reports the output at its start
    assert whole.usage.input_tokens == 7  # 3 framing tokens and "Name three rivers."


async def test_the_key_and_the_version_are_checked_first(upstream) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": QUESTION}
    version = {"anthropic-version": "2026-10-21"}
    status, error = await post(upstream, body, version)
    assert (status, error["error"]) == (401, {"type": "authentication_error", "message": "x-api-key header is required"})
    assert error["type"] == "error" and error["request_id"].startswith("req_")
    status, error = await post(upstream, body, {**version, "x-api-key": "wrong"})
    assert (status, error["error"]["type"]) == (401, "authentication_error")
    status, _ = await post(upstream, body, {**version, "Authorization": f"Bearer {upstream.api_key}"})
    assert status == 200  # SDK 2.x sends the key as a bearer token
    status, error = await post(upstream, body, {"x-api-key": upstream.api_key})
    assert (status, error["error"]["message"]) == (400, "anthropic-version: header is required")


@pytest.mark.parametrize(("body", "message"), [
    ({"model": "claude-sonnet-4-5", "messages": QUESTION}, "max_tokens: Field required"),
    ({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
     "messages.0.role: Input should be 'user' or 'assistant'"),
    ({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": QUESTION, "temperature": 1.0},
     "temperature: Extra inputs are not permitted"),
])
async def test_invalid_bodies_are_refused_as_the_api_refuses_them(upstream, body, message) -> None:
    status, error = await post(upstream, body, {"x-api-key": upstream.api_key, "anthropic-version": "2026-10-21"})
    assert (status, error["type"], error["error"]) == (400, "error", {"type": "invalid_request_error",
                                                                      "message": message})


async def test_the_older_version_still_takes_sampling_parameters_and_unknown_models_are_404(upstream) -> None:
    headers = {"x-api-key": upstream.api_key, "anthropic-version": "2023-06-01"}
    status, _ = await post(upstream, {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": QUESTION,
                                      "temperature": 0.3}, headers)
    assert status == 200
    status, error = await post(upstream, {"model": "claude-nope", "max_tokens": 5, "messages": QUESTION}, headers)
    assert (status, error["error"]) == (404, {"type": "not_found_error", "message": "model: claude-nope"})


@pytest.mark.parametrize(("fault", "error", "status"), [("529", anthropic.OverloadedError, 529),
                                                        ("429", anthropic.RateLimitError, 429),
                                                        ("500", anthropic.InternalServerError, 500)])
async def test_faults_are_anthropics_errors(upstream, fault, error, status) -> None:
    async with sdk(upstream) as client:
        with pytest.raises(error) as raised:
            await client.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=QUESTION,
                                         extra_headers={"x-fake-fault": fault, "x-fake-retry-after": "9"})
    assert raised.value.status_code == status and raised.value.request_id.startswith("req_")
    if fault == "429":
        assert raised.value.response.headers["retry-after"] == "9"


async def test_the_prompt_cache_writes_at_breakpoints_and_reads_back(upstream) -> None:
    system = [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]
    async with sdk(upstream) as client:
        first = await client.messages.create(model="claude-sonnet-4-5", max_tokens=5, system=system, messages=QUESTION)
        second = await client.messages.create(model="claude-sonnet-4-5", max_tokens=5, system=system,
                                              messages=[{"role": "user", "content": "Another question."}])
        short = await client.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=QUESTION, system=[
            {"type": "text", "text": "Short.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
    written = first.usage.cache_creation_input_tokens
    assert written > 1024 and first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == written
    assert second.usage.cache_read_input_tokens == written and second.usage.cache_creation_input_tokens == 0
    assert (short.usage.cache_creation_input_tokens, short.usage.cache_read_input_tokens) == (0, 0)  # under 1,024


def test_the_cache_looks_back_twenty_blocks_and_entries_expire() -> None:
    now = [0.0]
    cache = PromptCache(clock=lambda: now[0])
    blocks = [{"type": "text", "text": LONG}] + [{"type": "text", "text": f"part {i}"} for i in range(30)]

    def body(marked: list[int], ttl: str = "5m") -> dict:
        content = [dict(b, cache_control={"type": "ephemeral", "ttl": ttl}) if i in marked else b
                   for i, b in enumerate(blocks)]
        return {"messages": [{"role": "user", "content": content}]}

    total, wrote = cache.use(body([5], "1h"), "claude-sonnet-4-5")
    assert wrote.written_1h > 1024 and wrote.read == 0
    _, near = cache.use(body([20]), "claude-sonnet-4-5")  # 15 blocks after the written prefix: found
    assert near.read == wrote.written_1h
    now[0] = 10.0
    _, far = cache.use(body([30]), "claude-sonnet-4-5")  # 25 blocks after the nearest cached prefix (20): found at 20
    assert far.read > near.read
    now[0] = 10.0 + 3601
    _, expired = cache.use(body([5]), "claude-sonnet-4-5")
    assert expired.read == 0 and expired.written_5m == wrote.written_1h


async def test_a_stream_error_event_ends_the_stream(upstream) -> None:
    async with sdk(upstream) as client:
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            async with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=QUESTION,
                                              extra_headers={"x-fake-fault": "stream-error"}) as stream:
                await stream.get_final_message()


async def test_count_tokens_counts_what_a_message_would_read(upstream) -> None:
    async with sdk(upstream) as client:
        counted = await client.messages.count_tokens(model="claude-sonnet-4-5", system=LONG, messages=QUESTION)
        created = await client.messages.create(model="claude-sonnet-4-5", max_tokens=5, system=LONG, messages=QUESTION)
    assert counted.input_tokens == created.usage.input_tokens > 1000
