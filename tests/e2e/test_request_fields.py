"""Request fields a client could use to spend more than the proxy counts: each is refused, or counted anyway."""

import json

import pytest

from proxy.control.keys import key_hash
from tests.budgets.test_budgets import request_cost_with_output, usd
from tests.conftest import StartProxy
from tests.e2e.raw_http import raw_request

JSON = {"Content-Type": "application/json"}
MESSAGES = [{"role": "user", "content": "hi"}]


def chat(**fields) -> bytes:
    return json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, **fields}).encode()


@pytest.mark.parametrize("background", [True, "yes", 1])
async def test_a_background_response_is_refused_before_it_is_sent(
    start_proxy: StartProxy, fake, background
) -> None:
    """Its POST answers at once, queued and without usage; what it generates later was never priced nor budgeted
    (on 7d701dd it was forwarded, and recorded at the cost of its prompt alone)."""
    proxy = await start_proxy()
    body = json.dumps({"model": "gpt-4o-mini", "input": "hi", "background": background}).encode()
    answer = await raw_request(proxy.port, "POST", "/v1/responses", body=body, headers=JSON)
    assert answer.status == 400
    error = answer.json()["error"]
    assert (error["param"], error["code"]) == ("background", "unsupported_parameter")
    assert fake.requests == []
    off = json.dumps({"model": "gpt-4o-mini", "input": "hi", "background": False}).encode()
    assert (await raw_request(proxy.port, "POST", "/v1/responses", body=off, headers=JSON)).status == 200


async def test_with_both_output_limits_the_larger_is_reserved(start_proxy: StartProxy, fake) -> None:
    """The upstream may honour either: on 7d701dd max_completion_tokens: 5 hid max_tokens: 1,000,000 from the
    reservation, and a budget that fits 1,000 output tokens let it through."""
    proxy = await start_proxy(budgets=[{"scope": "global", "usd": usd(request_cost_with_output(1000)),
                                        "window": "day"}])
    both = chat(max_completion_tokens=5, max_tokens=1_000_000)
    answer = await raw_request(proxy.port, "POST", "/v1/chat/completions", body=both, headers=JSON)
    assert answer.status == 429
    assert fake.requests == []
    fits = chat(max_completion_tokens=5, max_tokens=10)
    assert (await raw_request(proxy.port, "POST", "/v1/chat/completions", body=fits, headers=JSON)).status == 200


@pytest.mark.parametrize("include_usage", ["false", 0, [], {}])
async def test_include_usage_must_be_a_boolean(start_proxy: StartProxy, fake, include_usage) -> None:
    """"false" is truthy: the proxy took it for a yes and did not ask for usage an upstream may then not send."""
    proxy = await start_proxy()
    body = chat(stream=True, stream_options={"include_usage": include_usage})
    answer = await raw_request(proxy.port, "POST", "/v1/chat/completions", body=body, headers=JSON)
    assert answer.status == 400
    assert answer.json()["error"]["param"] == "stream_options.include_usage"
    assert fake.requests == []


@pytest.mark.parametrize("options", [None, {}, {"include_usage": False}])
async def test_a_stream_that_does_not_ask_for_usage_is_still_counted_exactly(
    start_proxy: StartProxy, fake, options
) -> None:
    proxy = await start_proxy()
    body = chat(stream=True, max_tokens=5, **({} if options is None else {"stream_options": options}))
    answer = await raw_request(proxy.port, "POST", "/v1/chat/completions", body=body, headers=JSON)
    assert answer.status == 200 and b'"usage":{' not in answer.body  # the usage chunk stays hidden from it
    assert fake.requests[-1].body["stream_options"]["include_usage"] is True
    row = (await proxy.ledger.recent(1))[0]
    assert (row["completion_tokens"], row["usage_source"]) == (5, "upstream") and row["cost_nanos"] > 0


async def test_a_model_without_a_price_is_refused_where_a_usd_budget_covers_it(start_proxy: StartProxy, fake) -> None:
    """On 7d701dd it reserved and settled $0: any model missing from the table walked around every usd budget."""
    proxy = await start_proxy(
        auth={"keys": [{"id": "bot", "team": "support", "sha256": key_hash("tg-bot-key")}]},
        budgets=[{"scope": "team:support", "usd": "0.01", "window": "day"},
                 {"scope": "global", "tokens_per_minute": 100_000}])
    unpriced = chat(model="llama-3.1-70b", max_tokens=5)
    keyed = {**JSON, "Authorization": "Bearer tg-bot-key"}
    answer = await raw_request(proxy.port, "POST", "/v1/chat/completions", body=unpriced, headers=keyed)
    assert answer.status == 400
    error = answer.json()["error"]
    assert (error["param"], error["code"]) == ("model", "model_not_priced")
    assert all(name in error["message"] for name in ("team:support", "pricing.overrides", "pricing.unpriced: serve"))
    assert fake.requests == []
    # No usd budget covers an anonymous caller: served, limited by tokens only, as before.
    assert (await raw_request(proxy.port, "POST", "/v1/chat/completions", body=unpriced, headers=JSON)).status == 200


async def test_pricing_unpriced_serve_serves_a_model_without_a_price_under_a_usd_budget(
    start_proxy: StartProxy, fake
) -> None:
    proxy = await start_proxy(pricing={"unpriced": "serve"}, budgets=[{"scope": "global", "usd": "0.01", "window": "day"}])
    unpriced = chat(model="llama-3.1-70b", max_tokens=5)
    assert (await raw_request(proxy.port, "POST", "/v1/chat/completions", body=unpriced, headers=JSON)).status == 200
