"""prompt_cache over a long conversation with the fake Anthropic, whose prompt cache works as Anthropic documents:
breakpoints placed where they pay, savings exact and net of the write premium, shadow mode changing nothing."""

import anthropic
import openai
import orjson
import pytest

from tests.conftest import RunningProxy, both_upstreams
from tests.e2e.test_anthropic_sdk import sonnet_cost
from tests.fake.content import WORDS

SYSTEM = "You answer questions about this vocabulary: " + " ".join(WORDS) * 10  # ~1,300 tokens: cacheable
QUESTIONS = ["Name three rivers.", "Which is the longest?", "Where does it start?", "And where does it end?",
             "What lives in it?", "Is it dammed?"]
MARK = {"type": "ephemeral"}


async def conversation(proxy: RunningProxy, *, turns: int = len(QUESTIONS), **options) -> list[dict]:
    """Turns of one conversation through the anthropic SDK; returns the bodies as sent."""
    history: list[dict] = []
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key="sk-client", max_retries=0) as sdk:
        for question in QUESTIONS[:turns]:
            history.append({"role": "user", "content": question})
            answer = await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=100, system=SYSTEM,
                                               messages=history, **options)
            history.append({"role": "assistant", "content": answer.content[0].text})
    return history


def marked(body: dict) -> list[str]:
    """Where a Messages body carries cache_control."""
    system = body.get("system")
    places = ["system"] if isinstance(system, list) and "cache_control" in system[-1] else []
    for i, message in enumerate(body["messages"]):
        content = message["content"]
        if isinstance(content, list) and any("cache_control" in block for block in content):
            places.append(f"messages.{i}")
    return places


def policy_entry(record: dict, name: str = "prompt_cache") -> dict:
    return orjson.loads(record["policies"])[name]


@pytest.fixture
async def cached(start_proxy, fake, claude) -> RunningProxy:
    return await start_proxy(upstreams=both_upstreams(fake, claude), policies=[{"type": "prompt_cache"}])


async def test_a_long_conversation_caches_its_prefix_and_saves_net_of_writes(cached, claude) -> None:
    await conversation(cached)
    sent = [request.body for request in claude.requests]
    assert marked(sent[0]) == ["system"]  # a first question: only the system prompt is a stable prefix
    for turn, body in enumerate(sent[1:], start=1):
        assert marked(body) == ["system", f"messages.{2 * turn - 2}", f"messages.{2 * turn}"]
        assert body["system"][-1]["cache_control"] == MARK

    records = sorted(await cached.ledger.recent(20), key=lambda r: r["ts"])
    assert len(records) == len(QUESTIONS)
    for turn, record in enumerate(records):
        read, written = record["cached_prompt_tokens"], record["cache_write_tokens"]
        uncached = record["prompt_tokens"] - read - written
        paid = sonnet_cost(uncached, record["completion_tokens"], read=read, written_5m=written)
        assert record["cost_nanos"] == int(paid * 10**9)
        would_have_paid = sonnet_cost(record["prompt_tokens"], record["completion_tokens"])
        entry = policy_entry(record)
        assert (entry["mark"], entry["mechanism"], entry["basis"]) == ("treated", "prompt_cache", "counterfactual")
        assert entry["saved_nanos"] == record["savings_nanos"] == int((would_have_paid - paid) * 10**9)
        if turn == 0:
            assert read == 0 and written > 1000 and entry["saved_nanos"] < 0  # written, not yet read back
        else:
            assert read >= records[turn - 1]["cache_write_tokens"]  # what the last turn wrote is read back
            assert uncached == 0 and entry["saved_nanos"] > 0
    assert sum(r["savings_nanos"] for r in records) > 0


async def test_shadow_mode_changes_nothing_and_says_what_it_would_do(start_proxy, fake, claude) -> None:
    proxy = await start_proxy(upstreams=both_upstreams(fake, claude),
                              policies=[{"type": "prompt_cache", "mode": "shadow"}])
    await conversation(proxy, turns=3)
    assert all(marked(request.body) == [] for request in claude.requests)
    for record in await proxy.ledger.recent(3):
        assert (record["cached_prompt_tokens"], record["cache_write_tokens"], record["savings_nanos"]) == (0, 0, 0)
        assert policy_entry(record) == {"mark": "shadow:cache_breakpoints"}
        assert record["cost_nanos"] == int(sonnet_cost(record["prompt_tokens"], record["completion_tokens"]) * 10**9)


async def test_breakpoints_the_client_placed_are_left_alone(cached, claude) -> None:
    async with anthropic.AsyncAnthropic(base_url=cached.url, api_key="sk-client", max_retries=0) as sdk:
        await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}],
                                  system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral",
                                                                                            "ttl": "1h"}}])
    sent = claude.requests[0].body
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert marked(sent) == ["system"]
    record = (await cached.ledger.recent(1))[0]
    assert record["cache_write_1h_tokens"] == record["cache_write_tokens"] > 1000
    assert "saved_nanos" not in policy_entry(record)  # the client's own caching is not the policy's saving


async def test_one_hour_breakpoints_are_priced_at_the_one_hour_rate(start_proxy, fake, claude) -> None:
    proxy = await start_proxy(upstreams=both_upstreams(fake, claude), policies=[{"type": "prompt_cache", "ttl": "1h"}])
    await conversation(proxy, turns=2)
    assert claude.requests[1].body["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    first, second = sorted(await proxy.ledger.recent(2), key=lambda r: r["ts"])
    assert first["cache_write_1h_tokens"] == first["cache_write_tokens"] > 1000
    uncached = first["prompt_tokens"] - first["cache_write_tokens"]
    paid = sonnet_cost(uncached, first["completion_tokens"], written_1h=first["cache_write_tokens"])
    assert first["cost_nanos"] == int(paid * 10**9)
    # the 1h premium is 100% of input, four times the 5-minute one: a write alone loses that much
    assert first["savings_nanos"] == -first["cache_write_tokens"] * 3_000
    assert second["cached_prompt_tokens"] == first["cache_write_tokens"] and second["savings_nanos"] > 0


async def test_an_openai_client_talking_to_claude_gets_breakpoints_in_the_translated_body(cached, claude) -> None:
    history = [{"role": "system", "content": SYSTEM}]
    async with openai.AsyncOpenAI(base_url=cached.base_url, api_key="sk-client", max_retries=0) as sdk:
        for question in QUESTIONS[:3]:
            history.append({"role": "user", "content": question})
            answer = await sdk.chat.completions.create(model="claude-sonnet-4-5", messages=history)
            history.append({"role": "assistant", "content": answer.choices[0].message.content})
    assert [marked(r.body) for r in claude.requests] == [
        ["system"], ["system", "messages.0", "messages.2"], ["system", "messages.2", "messages.4"]]
    last = (await cached.ledger.recent(1))[0]
    assert last["cached_prompt_tokens"] > 1000 and last["savings_nanos"] > 0
    assert answer.usage.prompt_tokens_details.cached_tokens == last["cached_prompt_tokens"]


async def test_openai_upstreams_cache_by_themselves_so_nothing_is_placed(cached, fake) -> None:
    async with openai.AsyncOpenAI(base_url=cached.base_url, api_key="sk-client", max_retries=0) as sdk:
        await sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "system", "content": SYSTEM},
                                                                         {"role": "user", "content": "hi"}],
                                          extra_headers={"x-fake-cached-tokens": "1024"})
    assert "cache_control" not in orjson.dumps(fake.requests[0].body).decode()
    record = (await cached.ledger.recent(1))[0]
    assert record["cached_prompt_tokens"] == 1024 and policy_entry(record) == {"mark": "treated"}


async def test_a_short_prompt_gets_no_breakpoint(cached, claude) -> None:
    async with anthropic.AsyncAnthropic(base_url=cached.url, api_key="sk-client", max_retries=0) as sdk:
        await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=50, system="Be brief.",
                                  messages=[{"role": "user", "content": "hi"}])
    assert marked(claude.requests[0].body) == []
    assert cached.metrics.policy_actions.labels("prompt_cache", "cache_breakpoints")._value.get() == 0
