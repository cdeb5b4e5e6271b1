"""The chain runner: matching, order, holdout, shadow mode, failing closed and open."""

import math

import pytest

from proxy.errors import ProxyError
from proxy.exchange import Exchange
from proxy.stages.hooks import PolicyChain
from proxy.policies.base import PolicyConfig
from proxy.accounting.savings import HoldoutStats
from tests.policies.helpers import SERVICES, chain, exchange

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Please summarise this report."}]}


async def test_policies_run_in_config_order_and_only_when_matching() -> None:
    policies, metrics = chain(
        {"name": "brief", "type": "concise", "match": {"models": ["gpt-4o*"]}},
        {"name": "small", "type": "route", "to": "gpt-4o-mini",
         "match": {"last_message_regex": "(?i)summari[sz]e", "max_prompt_tokens": 8000}},
        {"name": "claude-only", "type": "concise", "match": {"models": ["claude-*"]}},
    )
    ex = exchange("chat", CHAT)
    await policies.on_request(ex)
    assert ex.applied == ["brief", "small"]
    assert ex.policy_marks == {"brief": "treated", "small": "treated"}
    assert ex.model == "gpt-4o-mini"
    assert b'thriftgate_policy_actions_total{action="route",policy="small"} 1.0' in metrics.render()


@pytest.mark.parametrize("match,body,headers,matches", [
    ({"tags": ["extraction"]}, CHAT, {"x-thriftgate-tags": "a, extraction"}, True),
    ({"tags": ["extraction"]}, CHAT, {"x-thriftgate-tags": "other"}, False),
    ({"min_prompt_tokens": 5}, CHAT, {}, True),
    ({"min_prompt_tokens": 500}, CHAT, {}, False),
    ({"min_prompt_to_output_ratio": 2}, {**CHAT, "max_tokens": 4}, {}, True),
    ({"min_prompt_to_output_ratio": 2}, {**CHAT, "max_tokens": 400}, {}, False),
    ({"min_prompt_to_output_ratio": 2}, CHAT, {}, False),  # no output limit: ratio unknown
    ({"has_tools": True}, {**CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]}, {}, True),
    ({"has_tools": True}, CHAT, {}, False),
    ({"has_images": True}, {"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}, {}, True),
    ({"has_response_format": True}, {**CHAT, "response_format": {"type": "json_object"}}, {}, True),
    ({"stream": True}, {**CHAT, "stream": True}, {}, True),
    ({"stream": True}, CHAT, {}, False),
    ({"endpoints": ["responses"]}, CHAT, {}, False),
    ({"min_max_tokens": 100}, {**CHAT, "max_tokens": 100}, {}, True),
])
async def test_match_conditions(match, body, headers, matches) -> None:
    policies, _ = chain({"name": "p", "type": "concise", "match": match})
    ex = exchange("chat", body, headers)
    ex.tags = frozenset(t.strip() for t in headers.get("x-thriftgate-tags", "").split(",") if t.strip())
    await policies.on_request(ex)
    assert ("p" in ex.applied) is matches


async def test_holdout_fraction_stays_within_its_statistical_bounds() -> None:
    policies, _ = chain({"name": "brief", "type": "concise", "holdout": 0.2})
    trials = 2000
    held = 0
    for _ in range(trials):
        ex = exchange("chat", CHAT)
        await policies.on_request(ex)
        held += ex.policy_marks["brief"] == "held_out"
        assert (ex.policy_marks["brief"] == "held_out") == (len(ex.body["messages"]) == 1)
    sigma = math.sqrt(trials * 0.2 * 0.8)
    assert abs(held - trials * 0.2) < 5 * sigma  # fails by chance about once in 3.5 million runs


async def test_shadow_mode_records_and_changes_nothing() -> None:
    policies, metrics = chain(
        {"name": "small", "type": "route", "to": "gpt-4o-mini", "mode": "shadow"},
        {"name": "brief", "type": "concise", "mode": "shadow"},
        {"name": "strict", "type": "cap", "max_tokens": 10, "on_exceed": "reject", "mode": "shadow"},
    )
    ex = exchange("chat", {**CHAT, "max_tokens": 100})
    before = ex.raw_body
    await policies.on_request(ex)
    assert ex.model == "gpt-4o" and not ex.body_changed and not ex.applied
    assert ex.body == exchange("chat", {**CHAT, "max_tokens": 100}).body and ex.raw_body == before
    assert ex.policy_marks == {"small": "shadow:route->gpt-4o-mini", "brief": "shadow:inject", "strict": "shadow:reject"}
    assert b'action="shadow_route",policy="small"' in metrics.render()


class Broken:
    async def on_request(self, ex: Exchange) -> str | None:
        raise KeyError("boom")

    async def on_response(self, ex: Exchange) -> None:
        raise KeyError("boom")


def broken_chain() -> tuple[PolicyChain, object]:
    from prometheus_client import CollectorRegistry

    from proxy.accounting.metrics import Metrics
    metrics = Metrics(CollectorRegistry(), models=())
    entry = (PolicyConfig(name="broken-cap", type="cap"), Broken())
    return PolicyChain([entry], SERVICES, metrics, HoldoutStats()), metrics


async def test_a_broken_request_hook_fails_closed_naming_the_policy() -> None:
    policies, metrics = broken_chain()
    with pytest.raises(ProxyError) as caught:
        await policies.on_request(exchange("chat", CHAT))
    assert caught.value.status == 500 and "broken-cap" in caught.value.message
    assert b'thriftgate_policy_errors_total{hook="on_request",policy="broken-cap"} 1.0' in metrics.render()


async def test_a_broken_response_hook_fails_open_and_is_counted() -> None:
    policies, metrics = broken_chain()
    ex = exchange("chat", CHAT)
    ex.policy_marks["broken-cap"] = "treated"
    ex.status = 200
    await policies.after_answer(ex)  # does not raise
    assert b'thriftgate_policy_errors_total{hook="on_response",policy="broken-cap"} 1.0' in metrics.render()


async def test_holdout_savings_are_credited_only_with_evidence() -> None:
    policies, metrics = chain({"name": "brief", "type": "concise", "holdout": 0.5})
    for index in range(200):
        ex = exchange("chat", CHAT)
        await policies.on_request(ex)
        ex.status = 200
        ex.cost_nanos = 1000 if ex.policy_marks["brief"] == "treated" else 4000
        await policies.after_answer(ex)
    text = metrics.render().decode()
    line = next(l for l in text.splitlines() if l.startswith('thriftgate_savings_usd_total{basis="holdout_estimate"'))
    saved = float(line.rsplit(" ", 1)[1])
    assert 'mechanism="concise",policy="brief"' in line
    # ~100 treated requests, each 3000 nanos cheaper; the first ones wait for 20 samples per arm.
    assert 50 * 3000e-9 < saved < 100 * 3000e-9
