"""Request fields a client could use to spend more than the proxy counts: each is refused, or counted anyway."""

import json

import pytest

from proxy.accounting.money import MAX_EXACT
from proxy.openai_wire import MAX_OUTPUT_TOKENS
from proxy.control.keys import key_hash
from tests.budgets.test_budgets import request_cost_with_output, usd
from tests.conftest import StartProxy, both_upstreams
from tests.e2e.raw_http import raw_request
from tests.shared import REDIS_URL

JSON = {"Content-Type": "application/json"}
ANTHROPIC_JSON = {**JSON, "anthropic-version": "2023-06-01"}
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


# A budget each store held n=1e9 against badly: a usd limit it took for a budget matter (429: "lower its max_tokens"),
# tokens enough that Redis's Lua counters overflowed on n x max_tokens (a 500; limits now stop at MAX_EXACT).
CHOICE_BUDGETS = {"usd": {"scope": "global", "usd": 1000, "window": "day"},
                  "tokens": {"scope": "global", "tokens_per_minute": MAX_EXACT}}


def budgeted(store: str, budget: str, redis_prefix: str) -> dict:
    changes: dict = {"budgets": [CHOICE_BUDGETS[budget]]}
    if store == "redis":
        changes["store"] = {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": redis_prefix}
    return changes


@pytest.mark.parametrize("store", ["memory", "redis"])
@pytest.mark.parametrize("budget", sorted(CHOICE_BUDGETS))
@pytest.mark.parametrize("path,field,value,code", [
    ("/v1/chat/completions", "n", 10**9, "integer_above_max_value"),
    ("/v1/chat/completions", "n", 2**62, "integer_above_max_value"),
    ("/v1/chat/completions", "n", 0, "integer_below_min_value"),
    ("/v1/chat/completions", "n", 1e9, "invalid_type"),
    ("/v1/completions", "n", 129, "integer_above_max_value"),
    ("/v1/completions", "best_of", 10**18, "integer_above_max_value"),
])
async def test_a_choice_count_out_of_range_is_a_400_before_anything_is_reserved(
    start_proxy: StartProxy, fake, redis_prefix, store, budget, path, field, value, code
) -> None:
    """Every choice (n, best_of) is billed, so the budget holds n x the output limit: an n OpenAI would refuse is
    refused first, as OpenAI refuses it, never a budget's 429 or a store's 500."""
    proxy = await start_proxy(**budgeted(store, budget, redis_prefix))
    body = chat(**{field: value}) if path.endswith("chat/completions") else json.dumps(
        {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", field: value}).encode()
    answer = await raw_request(proxy.port, "POST", path, body=body, headers=JSON)
    assert answer.status == 400
    error = answer.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", field, code)
    assert fake.requests == []
    fits = chat(n=128, max_tokens=5)  # OpenAI's largest n: reserved for every choice, and served
    assert (await raw_request(proxy.port, "POST", "/v1/chat/completions", body=fits, headers=JSON)).status == 200


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_n_is_no_field_of_the_messages_api_and_reserves_nothing_more(
    start_proxy: StartProxy, fake, claude, redis_prefix, store
) -> None:
    """The budget multiplied a Messages body's n too: n=2**62 from an Anthropic client was a 500 with Redis."""
    proxy = await start_proxy(upstreams=both_upstreams(fake, claude), **budgeted(store, "tokens", redis_prefix))
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 5, "n": 2**62, "messages": MESSAGES}).encode()
    answer = await raw_request(proxy.port, "POST", "/v1/messages", body=body, headers=ANTHROPIC_JSON)
    assert answer.status != 500, answer.body
    assert answer.json()["type"] == ("message" if answer.status == 200 else "error")


@pytest.mark.parametrize("store", ["memory", "redis"])
@pytest.mark.parametrize("budget", [{"scope": "global", "usd": "9007199.254740991", "window": "month"},
                                    {"scope": "global", "tokens_per_minute": MAX_EXACT}])
async def test_the_largest_reservation_a_request_can_ask_for_is_held_exactly_by_the_largest_limits(
    start_proxy: StartProxy, fake, redis_prefix, store, budget
) -> None:
    """The largest output limit (MAX_OUTPUT_TOKENS) times the largest n (128) is reserved and served within the
    largest limits a budget may have, on Redis too (its scripts count in doubles, exact up to MAX_EXACT)."""
    changes: dict = {"budgets": [budget]}
    if store == "redis":
        changes["store"] = {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": redis_prefix}
    proxy = await start_proxy(**changes)
    # gpt-4o-mini's output is $0.60 per million tokens: 128 x 2**24 tokens, $1,288, within both limits.
    largest = chat(max_tokens=MAX_OUTPUT_TOKENS, n=128)
    served = await raw_request(proxy.port, "POST", "/v1/chat/completions", body=largest, headers=JSON)
    assert served.status == 200, served.body
    assert len(fake.requests) == 1


@pytest.mark.parametrize("path,field", [
    ("/v1/chat/completions", "max_tokens"),
    ("/v1/chat/completions", "max_completion_tokens"),
    ("/v1/responses", "max_output_tokens"),
    ("/v1/messages", "max_tokens"),
])
async def test_an_output_limit_past_any_model_is_a_400_and_the_ledger_keeps_writing(
    start_proxy: StartProxy, fake, claude, path, field
) -> None:
    """JSON integers go up to 2**64 - 1 and a ledger row keeps the output limit: on 1bf8f47, one request with
    max_tokens 2**64 - 1 failed every SQLite batch after it (OverflowError), so nothing more was recorded."""
    proxy = await start_proxy(upstreams=both_upstreams(fake, claude))
    messages_api = path == "/v1/messages"
    model = "claude-sonnet-4-5" if messages_api else "gpt-4o-mini"
    prompt = {"input": "hi"} if path == "/v1/responses" else {"messages": MESSAGES}
    headers = ANTHROPIC_JSON if messages_api else JSON
    for limit in (2**64 - 1, MAX_OUTPUT_TOKENS + 1):
        body = json.dumps({"model": model, **prompt, field: limit}).encode()
        answer = await raw_request(proxy.port, "POST", path, body=body, headers=headers)
        assert answer.status == 400
        error = answer.json()["error"]
        assert str(MAX_OUTPUT_TOKENS) in error["message"]
        assert error["type"] == "invalid_request_error" and (messages_api or error["param"] == field)
    assert fake.requests == [] and claude.requests == []
    body = json.dumps({"model": model, **prompt, field: 5}).encode()
    answer = await raw_request(proxy.port, "POST", path, body=body, headers=headers)
    assert answer.status == 200
    request_id = answer.headers["x-thriftgate-request-id"]
    await proxy.ledger.flush()
    assert (await proxy.ledger.get(request_id))["status"] == 200
