"""Policies through the real openai SDK, thriftgate and the fake upstream."""

from decimal import Decimal

import openai
import orjson

from tests.conftest import StartProxy

ASK = [{"role": "user", "content": "Tell me about the rivers of Europe."}]
SUMMARY = [{"role": "user", "content": "Please summarize the attached quarterly report."}]
FAKE_PRICES = {"fake-*": {"input": "0.10", "output": "0.40"}}  # the cascade's poor cheap models


def sdk(proxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-client", max_retries=0)


def policies_of(record: dict) -> dict:
    return orjson.loads(record["policies"]) if record["policies"] else {}


async def test_concise_instruction_is_injected_once_and_shortens_the_answer(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(policies=[{"name": "be-brief", "type": "concise", "match": {"models": ["gpt-4o*"]}}])
    async with sdk(proxy) as client:
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=ASK)
        plain = await client.chat.completions.create(model="gpt-4.1", messages=ASK)
    brief = raw.parse()
    assert raw.headers["x-thriftgate-policies"] == "be-brief"
    sent = fake.requests[0].body["messages"]
    assert [m["content"] for m in sent].count("Answer concisely.") == 1 and sent[0]["role"] == "system"
    assert brief.usage.completion_tokens < plain.usage.completion_tokens / 2
    record = await proxy.ledger.get(raw.headers["x-thriftgate-request-id"])
    assert policies_of(record) == {"be-brief": {"mark": "treated"}}


async def test_cap_clamps_what_is_sent_and_can_reject(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(policies=[
        {"type": "cap", "max_tokens": 64, "n": 2, "match": {"tags": ["batch"]}},
        {"name": "strict", "type": "cap", "max_tokens": 100, "on_exceed": "reject"},
    ])
    async with sdk(proxy) as client:
        answer = await client.chat.completions.create(
            model="gpt-4o-mini", messages=ASK, max_tokens=4000, n=5, extra_headers={"x-thriftgate-tags": "batch"})
        try:
            await client.chat.completions.create(model="gpt-4o-mini", messages=ASK, max_tokens=4000)
            raise AssertionError("a rejecting cap let the request through")
        except openai.BadRequestError as error:
            assert error.status_code == 400 and error.body["param"] == "max_tokens"
    assert (fake.requests[0].body["max_tokens"], fake.requests[0].body["n"]) == (64, 2)
    assert len(answer.choices) == 2
    assert len(fake.requests) == 1  # the rejected request never reached the upstream


async def test_route_is_visible_in_headers_and_ledger_with_its_saving(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(policies=[{
        "name": "small-for-summaries", "type": "route", "to": "gpt-4o-mini",
        "match": {"models": ["gpt-4o"], "last_message_regex": "(?i)summari[sz]e|tl;dr", "max_prompt_tokens": 8000},
    }])
    async with sdk(proxy) as client:
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=SUMMARY)
        kept = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=ASK)
    usage = raw.parse().usage
    assert raw.headers["x-thriftgate-model"] == "gpt-4o-mini"
    assert raw.headers["x-thriftgate-policies"] == "small-for-summaries"
    assert kept.headers["x-thriftgate-model"] == "gpt-4o" and "x-thriftgate-policies" not in kept.headers
    assert fake.requests[0].body["model"] == "gpt-4o-mini"
    record = await proxy.ledger.get(raw.headers["x-thriftgate-request-id"])
    assert (record["requested_model"], record["model"]) == ("gpt-4o", "gpt-4o-mini")
    gpt_4o = (usage.prompt_tokens * Decimal("2.5") + usage.completion_tokens * Decimal(10)) / 10**6
    paid = Decimal(raw.headers["x-thriftgate-cost-usd"])
    expected_saving = int((gpt_4o - paid) * 10**9)
    assert record["savings_nanos"] == expected_saving > 0
    assert policies_of(record)["small-for-summaries"] == {
        "mark": "treated", "mechanism": "routing", "basis": "counterfactual", "saved_nanos": expected_saving}
    metrics = proxy.metrics.render().decode()
    assert 'thriftgate_savings_usd_total{basis="counterfactual",mechanism="routing",policy="small-for-summaries"}' in metrics


async def test_deny_is_a_403_in_openai_shape(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(policies=[{"name": "no-gpt5", "type": "deny", "match": {"models": ["gpt-5*"]}}])
    async with sdk(proxy) as client:
        try:
            await client.chat.completions.create(model="gpt-5", messages=ASK)
            raise AssertionError("denied request went through")
        except openai.PermissionDeniedError as error:
            assert error.status_code == 403 and "no-gpt5" in error.message
    assert fake.requests == []


async def test_shadow_mode_changes_nothing_end_to_end(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(policies=[
        {"name": "would-route", "type": "route", "to": "gpt-4o-mini", "mode": "shadow"},
        {"name": "would-brief", "type": "concise", "mode": "shadow"},
    ])
    async with sdk(proxy) as client:
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=ASK)
    assert raw.headers["x-thriftgate-model"] == "gpt-4o"
    assert "x-thriftgate-policies" not in raw.headers
    assert fake.requests[0].body == {"model": "gpt-4o", "messages": ASK}
    record = await proxy.ledger.get(raw.headers["x-thriftgate-request-id"])
    marks = policies_of(record)
    assert marks["would-route"]["mark"] == "shadow:route->gpt-4o-mini" and marks["would-route"]["basis"] == "shadow"
    assert marks["would-route"]["saved_nanos"] > 0  # what routing would have saved on these tokens
    assert record["savings_nanos"] == 0  # nothing was actually saved
    assert marks["would-brief"] == {"mark": "shadow:inject"}


async def test_cascade_accepts_a_good_cheap_answer(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(policies=[{"name": "cheap-first", "type": "cascade", "try": "gpt-4o-mini"}])
    async with sdk(proxy) as client:
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=ASK)
    assert raw.headers["x-thriftgate-model"] == "gpt-4o-mini"
    assert [r.body["model"] for r in fake.requests] == ["gpt-4o-mini"]
    record = await proxy.ledger.get(raw.headers["x-thriftgate-request-id"])
    assert record["model"] == "gpt-4o-mini" and record["savings_nanos"] > 0
    assert Decimal(record["cost_nanos"]) / 10**9 == Decimal(raw.headers["x-thriftgate-cost-usd"])


async def _escalation(start_proxy: StartProxy, fake, try_model: str, **request) -> tuple[dict, list[dict]]:
    proxy = await start_proxy(
        pricing={"overrides": FAKE_PRICES},
        policies=[{"name": "cheap-first", "type": "cascade", "try": try_model,
                   "escalate_on": ["truncated", "empty", "refusal", "invalid_json"]}],
    )
    async with sdk(proxy) as client:
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", **request)
    main = await proxy.ledger.get(raw.headers["x-thriftgate-request-id"])
    rows = await proxy.ledger.recent(10)
    # Each case gets its own proxy, but they share the test's ledger file: keep this case's rows.
    return main, [r for r in rows if r["request_id"] != main["request_id"] and r["model"] == try_model]


async def test_cascade_escalates_on_each_check_and_records_both_costs(start_proxy: StartProxy, fake) -> None:
    cases = {
        "empty": ("fake-empty", {"messages": ASK}),
        "refusal": ("fake-refusal", {"messages": ASK}),
        "invalid_json": ("fake-badjson", {"messages": ASK, "response_format": {"type": "json_object"}}),
    }
    for check, (try_model, request) in cases.items():
        fake.requests.clear()
        main, tries = await _escalation(start_proxy, fake, try_model, **request)
        assert [r.body["model"] for r in fake.requests] == [try_model, "gpt-4o"], check
        assert main["model"] == "gpt-4o" and main["cost_nanos"] > 0
        (attempt,) = tries
        assert attempt["model"] == try_model and attempt["error"] == f"cascade_escalated_{check}"
        assert attempt["cost_nanos"] > 0
        assert policies_of(main)["cheap-first"]["saved_nanos"] == -attempt["cost_nanos"]


async def test_cascade_escalates_a_truncated_answer(start_proxy: StartProxy, fake) -> None:
    main, (attempt,) = await _escalation(start_proxy, fake, "gpt-4o-mini", messages=ASK, max_tokens=5)
    assert attempt["error"] == "cascade_escalated_truncated" and main["model"] == "gpt-4o"


async def test_cascade_checks_json_schema(start_proxy: StartProxy, fake) -> None:
    schema = {"type": "object", "properties": {"rivers": {"type": "array"}}, "required": ["rivers"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    main, tries = await _escalation(start_proxy, fake, "gpt-4o-mini", messages=ASK, response_format=response_format)
    assert tries == [] and main["model"] == "gpt-4o-mini"  # the fake answers to the schema


async def test_cascade_leaves_streams_alone(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(policies=[{"type": "cascade", "try": "gpt-4o-mini"}])
    async with sdk(proxy) as client:
        stream = await client.chat.completions.create(model="gpt-4o", messages=ASK, stream=True)
        [chunk async for chunk in stream]
    assert [r.body["model"] for r in fake.requests] == ["gpt-4o"]


async def test_a_shadow_cascade_records_the_try_it_paid_for(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(policies=[{"name": "cheap-first", "type": "cascade", "try": "gpt-4o-mini",
                                         "mode": "shadow"}])
    async with sdk(proxy) as client:
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=ASK)
    assert raw.headers["x-thriftgate-model"] == "gpt-4o"  # nothing changed for the client
    assert [r.body["model"] for r in fake.requests] == ["gpt-4o-mini", "gpt-4o"]
    rows = {r["model"]: r for r in await proxy.ledger.recent(10)}
    assert rows["gpt-4o-mini"]["error"] == "cascade_shadow_accepted" and rows["gpt-4o-mini"]["cost_nanos"] > 0
    assert policies_of(rows["gpt-4o"])["cheap-first"] == {"mark": "shadow:accept"}
