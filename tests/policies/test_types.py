"""Each policy type on hand-built requests."""

import pytest

from proxy.errors import BadRequest, Forbidden
from proxy.accounting.usage import Usage
from tests.policies.helpers import PRICES, exchange, policy

CHAT = {"model": "gpt-4o", "messages": [{"role": "system", "content": "Be kind."},
                                        {"role": "user", "content": "Tell me about rivers."}]}


async def test_concise_injects_once_after_the_leading_system_messages() -> None:
    concise = policy({"type": "concise", "instruction": "Answer concisely."})
    ex = exchange("chat", CHAT)
    assert await concise.on_request(ex) == "inject"
    assert ex.body["messages"][1] == {"role": "system", "content": "Answer concisely."}
    assert ex.body_changed
    assert await concise.on_request(ex) is None  # never twice
    assert [m["content"] for m in ex.body["messages"]].count("Answer concisely.") == 1


async def test_concise_respects_a_client_that_already_asked() -> None:
    concise = policy({"type": "concise", "instruction": "Answer concisely."})
    body = {"model": "gpt-4o", "messages": [
        {"role": "developer", "content": [{"type": "text", "text": "Answer concisely."}]},
        {"role": "user", "content": "hi"}]}
    ex = exchange("chat", body)
    assert await concise.on_request(ex) is None
    assert not ex.body_changed


@pytest.mark.parametrize("endpoint,body,field,expected", [
    ("responses", {"model": "gpt-4o", "input": "hi"}, "instructions", "Short."),
    ("responses", {"model": "gpt-4o", "input": "hi", "instructions": "Be kind."}, "instructions", "Be kind.\n\nShort."),
    ("completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "hi"}, "prompt", "Short.\n\nhi"),
])
async def test_concise_on_responses_and_completions(endpoint, body, field, expected) -> None:
    concise = policy({"type": "concise", "instruction": "Short."})
    ex = exchange(endpoint, body)
    assert await concise.on_request(ex) == "inject"
    assert ex.body[field] == expected
    assert await concise.on_request(ex) is None


async def test_concise_leaves_embeddings_alone() -> None:
    ex = exchange("embeddings", {"model": "text-embedding-3-small", "input": "hi"})
    assert await policy({"type": "concise"}).on_request(ex) is None


async def test_cap_clamps_max_tokens_and_n() -> None:
    cap = policy({"type": "cap", "max_tokens": 100, "n": 5})
    ex = exchange("chat", {**CHAT, "max_tokens": 4000, "n": 10})
    assert await cap.on_request(ex) == "clamp_max_tokens+clamp_n"
    assert (ex.body["max_tokens"], ex.body["n"], ex.max_output_tokens) == (100, 5, 100)


async def test_cap_sets_a_limit_on_an_unbounded_request() -> None:
    ex = exchange("chat", CHAT)
    assert await policy({"type": "cap", "max_tokens": 256}).on_request(ex) == "clamp_max_tokens"
    assert ex.body["max_completion_tokens"] == 256 and ex.max_output_tokens == 256
    ex = exchange("responses", {"model": "gpt-4o", "input": "hi"})
    await policy({"type": "cap", "max_tokens": 256}).on_request(ex)
    assert ex.body["max_output_tokens"] == 256


async def test_cap_under_the_limit_changes_nothing() -> None:
    ex = exchange("chat", {**CHAT, "max_tokens": 50, "n": 2})
    assert await policy({"type": "cap", "max_tokens": 100, "n": 5}).on_request(ex) is None
    assert not ex.body_changed


@pytest.mark.parametrize("extra,param", [({"max_tokens": 4000}, "max_tokens"), ({"n": 9}, "n")])
async def test_cap_in_reject_mode_names_the_parameter(extra, param) -> None:
    cap = policy({"type": "cap", "max_tokens": 100, "n": 5, "on_exceed": "reject"})
    with pytest.raises(BadRequest) as caught:
        await cap.on_request(exchange("chat", {**CHAT, **extra}))
    assert caught.value.param == param and caught.value.status == 400


async def test_route_rewrites_the_model_and_prices_the_counterfactual() -> None:
    route = policy({"type": "route", "name": "small", "to": "gpt-4o-mini"})
    ex = exchange("chat", CHAT)
    assert await route.on_request(ex) == "route"
    assert (ex.model, ex.body["model"], ex.requested_model) == ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o")
    ex.usage = Usage(prompt_tokens=1000, completion_tokens=500)
    ex.cost_nanos = PRICES.cost_nanos("gpt-4o-mini", ex.usage)
    await route.on_response(ex)
    # gpt-4o: 1000 x $2.50/1M + 500 x $10/1M = $0.0075; gpt-4o-mini: $0.00015 + $0.0003 = $0.00045
    assert ex.savings[0].nanos == 7_500_000 - 450_000
    assert ex.savings[0].mechanism == "routing" and ex.savings[0].basis == "counterfactual"


async def test_deny_refuses_with_403() -> None:
    with pytest.raises(Forbidden) as caught:
        await policy({"type": "deny", "name": "no-gpt5", "message": "Not for this team."}).on_request(
            exchange("chat", CHAT))
    assert caught.value.status == 403 and "no-gpt5" in caught.value.message
