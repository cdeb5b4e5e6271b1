"""Lookups through the real openai SDK, thriftgate, the local MiniLM embedder and the fake upstream."""

import asyncio
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from proxy.stages.auth import key_hash
from proxy.lookup.service import LOOKUPS
from proxy.accounting.money import NANOS_PER_USD
from proxy.accounting.usage import Usage
from tests.conftest import RunningProxy
from tests.lookup.conftest import sdk
from tests.policies.helpers import PRICES

MODEL = "gpt-4o-mini"
DARK_MODE = "How do I enable dark mode?"
FAQ = {"name": "faq", "type": "semantic_cache", "embedder": "minilm", "threshold": 0.9}


def ask(text: str, system: str | None = None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


async def settled(proxy: RunningProxy, recorded: int = 0) -> None:
    """Cache writes run off the request path: wait for those in flight. A stream's client may read its
    end before the proxy stores it: wait for `recorded` requests in the ledger first."""
    for _ in range(500):
        if proxy.ledger.pending_count + proxy.ledger.written_count >= recorded:
            break
        await asyncio.sleep(0.01)
    writes = proxy.app[LOOKUPS]._writes
    if writes:
        await asyncio.wait(set(writes))


async def chat(client: openai.AsyncOpenAI, proxy: RunningProxy, text: str, **request: Any):
    raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=ask(text), **request)
    await settled(proxy)
    return raw


def lookups_of(record: dict) -> dict:
    return orjson.loads(record["lookups"])


async def test_an_exact_repeat_is_served_from_the_cache_priced_and_saved(start_lookups, fake, store_section) -> None:
    proxy = await start_lookups([{"type": "exact_cache"}], store=store_section)
    async with sdk(proxy) as client:
        first = await chat(client, proxy, DARK_MODE)
        again = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"content": DARK_MODE, "role": "user"}], temperature=1)  # equal once canonical
    assert first.headers["x-thriftgate-lookup"] == "miss" and again.headers["x-thriftgate-lookup"] == "exact-hit"
    assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert again.parse().usage.total_tokens == 0 and again.headers["x-thriftgate-cost-usd"] == "0.000000000"
    assert len(fake.requests) == 1
    record = await proxy.ledger.get(again.headers["x-thriftgate-request-id"])
    assert lookups_of(record) == {"exact_cache": {"result": "exact-hit"}}
    assert record["cost_nanos"] == 0 and record["savings_nanos"] == round(
        float(first.headers["x-thriftgate-cost-usd"]) * NANOS_PER_USD)
    metrics = proxy.metrics.render().decode()
    assert 'thriftgate_lookups_total{policy="exact_cache",result="exact-hit"} 1.0' in metrics
    assert 'mechanism="lookup",policy="exact_cache"' in metrics


async def test_a_paraphrase_hits_and_near_misses_do_not(start_lookups, fake, store_section) -> None:
    proxy = await start_lookups([FAQ], store=store_section)
    async with sdk(proxy) as client:
        await chat(client, proxy, DARK_MODE)
        await chat(client, proxy, "What is the capital of France?")
        paraphrase = await chat(client, proxy, "How can I switch on dark mode?")
        opposite = await chat(client, proxy, "How do I disable dark mode?")
        germany = await chat(client, proxy, "What is the capital of Germany?")
    assert paraphrase.headers["x-thriftgate-lookup"] == "semantic-hit"
    assert float(paraphrase.headers["x-thriftgate-similarity"]) >= 0.9
    assert paraphrase.parse().choices[0].message.content == fake.expected_text(ask(DARK_MODE))
    for near_miss in (opposite, germany):
        assert near_miss.headers["x-thriftgate-lookup"] == "miss"
        assert near_miss.parse().usage.completion_tokens > 0  # answered by the upstream
    assert len(fake.requests) == 4
    record = await proxy.ledger.get(opposite.headers["x-thriftgate-request-id"])
    assert lookups_of(record)["faq"]["refused"] == "alternative"  # 0.95 alike: the guard refused it


async def test_no_hit_across_system_prompts_temperatures_or_models(start_lookups, fake) -> None:
    proxy = await start_lookups([{"type": "exact_cache"}, FAQ])
    async with sdk(proxy) as client:
        await chat(client, proxy, DARK_MODE)
        others = [
            await client.chat.completions.with_raw_response.create(model=MODEL, messages=ask(DARK_MODE, "Be formal."))
            for _ in range(2)
        ] + [await chat(client, proxy, DARK_MODE, temperature=t) for t in (0.2, 0.7)]
        other_model = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=ask(DARK_MODE))
    await settled(proxy)
    assert [r.headers["x-thriftgate-lookup"] for r in others] == ["miss", "exact-hit", "miss", "miss"]
    assert other_model.headers["x-thriftgate-lookup"] == "miss"


async def test_no_hit_across_teams(start_lookups, fake) -> None:
    keys = {"tg-support-key-000000000000000000000": "support", "tg-billing-key-000000000000000000000": "billing"}
    proxy = await start_lookups(
        [{"type": "exact_cache"}, FAQ],
        auth={"required": True,
              "keys": [{"id": team, "team": team, "sha256": key_hash(key)} for key, team in keys.items()]},
    )
    support, billing = (sdk(proxy, api_key=key) for key in keys)
    async with support, billing:
        await chat(support, proxy, DARK_MODE)
        other_team = await chat(billing, proxy, DARK_MODE)
        same_team = await chat(support, proxy, "How can I switch on dark mode?")
    assert other_team.headers["x-thriftgate-lookup"] == "miss"
    assert same_team.headers["x-thriftgate-lookup"] == "semantic-hit"


async def test_streamed_answers_are_stored_and_hits_stream_like_the_real_thing(start_lookups, fake) -> None:
    proxy = await start_lookups([{"type": "exact_cache"}, FAQ])
    async with sdk(proxy) as client:
        streamed = await client.chat.completions.create(model=MODEL, messages=ask(DARK_MODE), stream=True)
        original = "".join([chunk.choices[0].delta.content or "" async for chunk in streamed])
        await settled(proxy, recorded=1)
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=ask("How can I switch on dark mode?"), stream=True,
            stream_options={"include_usage": True})
        chunks = [chunk async for chunk in raw.parse()]
        whole = await client.chat.completions.create(model=MODEL, messages=ask(DARK_MODE))  # exact hit
    assert raw.headers["x-thriftgate-lookup"] == "semantic-hit"
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == original
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 0
    assert whole.choices[0].message.content == original
    assert len(fake.requests) == 1


async def test_entries_expire_on_the_clock(start_lookups, fake, clock) -> None:
    proxy = await start_lookups([{"type": "exact_cache", "ttl": "1h"}, {**FAQ, "ttl": "1h"}])
    async with sdk(proxy) as client:
        await chat(client, proxy, DARK_MODE)
        clock.advance(3599)
        fresh = await chat(client, proxy, DARK_MODE)
        near = await chat(client, proxy, "How can I switch on dark mode?")
        clock.advance(2)
        stale = await chat(client, proxy, DARK_MODE)
        stale_near = await chat(client, proxy, "How can I switch on dark mode?")
    assert [r.headers["x-thriftgate-lookup"] for r in (fresh, near, stale, stale_near)] == [
        "exact-hit", "semantic-hit", "miss", "semantic-hit"]  # the miss stored it again


@pytest.mark.parametrize("request_options,headers", [
    ({"max_tokens": 5}, {}),  # cut at the limit: finish_reason length
    ({}, {"x-fake-fault": "500"}),
    ({"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]},
     {"x-fake-tool-call": "1"}),
])
async def test_incomplete_failed_and_tool_answers_are_never_stored(start_lookups, fake, request_options,
                                                                  headers) -> None:
    proxy = await start_lookups([{"type": "exact_cache"}])
    async with sdk(proxy) as client:
        for _ in range(2):
            try:
                raw = await chat(client, proxy, DARK_MODE, extra_headers=headers, **request_options)
                assert raw.headers["x-thriftgate-lookup"] == "miss"
            except openai.InternalServerError:
                pass
    assert len(fake.requests) == 2


async def test_an_interrupted_stream_is_never_stored(start_lookups, fake) -> None:
    proxy = await start_lookups([{"type": "exact_cache"}])
    async with sdk(proxy) as client:
        for attempt in range(1, 3):
            try:
                stream = await client.chat.completions.create(model=MODEL, messages=ask(DARK_MODE), stream=True,
                                                              extra_headers={"x-fake-fault": "cut"})
                [chunk async for chunk in stream]
            except openai.APIError:
                pass
            await settled(proxy, recorded=attempt)
    assert len(fake.requests) == 2


async def test_read_only_serves_without_storing_and_write_only_stores_without_serving(start_lookups, fake) -> None:
    proxy = await start_lookups([{"name": "fill", "type": "exact_cache", "mode": "write_only"},
                                 {"name": "serve", "type": "exact_cache", "mode": "read_only"}])
    async with sdk(proxy) as client:
        first = await chat(client, proxy, DARK_MODE)
        second = await chat(client, proxy, DARK_MODE)
    assert first.headers["x-thriftgate-lookup"] == second.headers["x-thriftgate-lookup"] == "miss"
    assert len(fake.requests) == 2  # "fill" stored it, but serves nothing; "serve" reads only its own entries


async def test_shadow_mode_answers_upstream_and_records_the_candidate_and_agreement(start_lookups, fake) -> None:
    proxy = await start_lookups([{**FAQ, "mode": "shadow", "agreement": 0.99}])
    async with sdk(proxy) as client:
        await chat(client, proxy, DARK_MODE)
        same = await chat(client, proxy, DARK_MODE)
        paraphrase = await chat(client, proxy, "How can I switch on dark mode?")
    assert "x-thriftgate-lookup" not in same.headers and len(fake.requests) == 3
    same_row = await proxy.ledger.get(same.headers["x-thriftgate-request-id"])
    para_row = await proxy.ledger.get(paraphrase.headers["x-thriftgate-request-id"])
    assert lookups_of(same_row)["faq"] | {"embedding_tokens": 0} == {
        "result": "semantic-hit", "similarity": 1.0, "agreed": True, "shadow": True, "embedding_tokens": 0,
        "embedding_cost_nanos": 0}
    assert orjson.loads(same_row["policies"])["faq"]["mark"] == "shadow:semantic-hit"
    assert same_row["savings_nanos"] == 0  # nothing was saved: the saving is shadow's "would have"
    # The fake answers each question with different words: the fresh answer disagrees with the stored one.
    assert lookups_of(para_row)["faq"]["agreed"] is False


async def test_operator_answers_are_loaded_served_and_deleted_by_scope(start_lookups, fake, monkeypatch) -> None:
    monkeypatch.setenv("THRIFTGATE_MASTER_KEY", "master-key-for-tests")  # loading and deleting are admin writes
    proxy = await start_lookups([{"type": "answers", "embedder": "minilm", "scope": "global", "threshold": 0.85}])
    pairs = [{"question": "What is your refund window?", "answer": "30 days from delivery."},
             {"question": "Do you ship to Canada?", "answer": "Yes, in 5 to 8 business days."}]
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer master-key-for-tests"}) as session:
        async with session.post(proxy.url + "/admin/lookup/answers?scope=global&embedder=minilm", json=pairs) as r:
            assert r.status == 200 and (await r.json())["loaded"] == 2
        async with sdk(proxy) as client:
            hit = await chat(client, proxy, "What is the refund window?")
            near_miss = await chat(client, proxy, "Do you ship to Mexico?")
            async with session.delete(proxy.url + "/admin/lookup?scope=global") as r:
                assert (await r.json())["deleted"] == 2
            gone = await chat(client, proxy, "What is the refund window?")
        async with session.delete(proxy.url + "/admin/lookup?scope=everyone") as r:
            assert r.status == 400 and (await r.json())["error"]["param"] == "scope"
    assert hit.headers["x-thriftgate-lookup"] == "answer-hit"
    assert hit.parse().choices[0].message.content == "30 days from delivery."
    assert near_miss.headers["x-thriftgate-lookup"] == gone.headers["x-thriftgate-lookup"] == "miss"


async def test_an_upstream_embedder_batches_concurrent_lookups_and_is_priced(start_lookups, fake) -> None:
    proxy = await start_lookups([{**FAQ, "embedder": "small"}],
                                embedders={"small": {"type": "upstream", "upstream": "fake"}})
    async with sdk(proxy) as client:
        answers = await asyncio.gather(*(chat(client, proxy, f"Question number {i}?") for i in range(6)))
    embedding_calls = [r for r in fake.requests if r.path == "/v1/embeddings"]
    assert len(embedding_calls) < 6 and sum(len(r.body["input"]) for r in embedding_calls) == 6
    record = await proxy.ledger.get(answers[0].headers["x-thriftgate-request-id"])
    lookup = lookups_of(record)["faq"]
    assert lookup["embedding_tokens"] > 0 and lookup["embedding_cost_nanos"] > 0
    chat_cost = record["cost_nanos"] - lookup["embedding_cost_nanos"]
    assert chat_cost > 0  # the request's cost holds its embedding and its answer


@pytest.mark.parametrize("model", ["fake-500", "fake-timeout"])
async def test_an_embedder_that_fails_or_hangs_never_fails_the_request(start_lookups, fake, model) -> None:
    proxy = await start_lookups([{**FAQ, "embedder": "broken"}], embedders={
        "broken": {"type": "upstream", "upstream": "fake", "model": model, "timeout_ms": 200}})
    async with sdk(proxy) as client:
        answer = await chat(client, proxy, DARK_MODE)
    assert answer.headers["x-thriftgate-lookup"] == "miss" and answer.parse().choices[0].message.content
    record = await proxy.ledger.get(answer.headers["x-thriftgate-request-id"])
    assert lookups_of(record)["faq"]["result"] == "embedder_failed"
    assert 'thriftgate_lookups_total{policy="faq",result="embedder_failed"} 1.0' in proxy.metrics.render().decode()


async def test_a_shadow_lookup_pays_for_its_embedding(start_lookups, fake) -> None:
    proxy = await start_lookups([{**FAQ, "embedder": "small", "mode": "shadow"}],
                                embedders={"small": {"type": "upstream", "upstream": "fake"}})
    async with sdk(proxy) as client:
        answer = await chat(client, proxy, DARK_MODE)
    record = await proxy.ledger.get(answer.headers["x-thriftgate-request-id"])
    embedding = lookups_of(record)["faq"]["embedding_cost_nanos"]
    answer_cost = PRICES.cost_nanos(MODEL, Usage(prompt_tokens=record["prompt_tokens"],
                                                 completion_tokens=record["completion_tokens"]))
    assert embedding > 0 and record["cost_nanos"] == answer_cost + embedding
