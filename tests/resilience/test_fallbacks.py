"""Fallbacks: another model once the first cannot answer, for the reasons configured; the budget hold follows it,
the saving (or its cost) is recorded, and a request may narrow the chain with x-thriftgate-fallbacks."""

import openai
import orjson
import pytest

from proxy.accounting.usage import Usage
from proxy.appkeys import PRICES
from tests.conftest import ANTHROPIC_KEY_ENV
from tests.resilience.conftest import CHAT, MODEL, deployment, metric, post, rows

MINI = "gpt-4o-mini"


def chain(*to: str, source: str = MODEL, on: tuple[str, ...] | None = None) -> dict:
    entry = {"from": source, "to": list(to)}
    return entry if on is None else {**entry, "on": list(on)}


async def test_a_model_whose_deployments_fail_falls_back_to_a_cheaper_one(start_routed, primary, fake) -> None:
    primary.faults(rate=1.0, choices=("503",))
    proxy = await start_routed(deployment("a", primary), fallbacks=[chain(MINI)], retries=1)
    status, body, headers = await post(proxy)
    assert status == 200 and body["model"] == "gpt-4o-mini-2024-07-18"
    assert headers["x-thriftgate-fallback"] == MINI and headers["x-thriftgate-model"] == MINI
    assert (headers["x-thriftgate-upstream"], headers["x-thriftgate-attempts"]) == ("catch-all", "3")
    assert fake.requests[-1].body["model"] == MINI and primary.served == 2
    *failed, answered = await rows(proxy, headers["x-thriftgate-request-id"])
    assert [row["model"] for row in failed] == [MODEL, MODEL] and answered["model"] == MINI
    assert (answered["requested_model"], answered["fallback"]) == (MODEL, "unavailable")
    # The fallback's saving: gpt-4o's price on the tokens gpt-4o-mini used, minus what they cost.
    prices = proxy.app[PRICES]
    usage = Usage(prompt_tokens=answered["prompt_tokens"], completion_tokens=answered["completion_tokens"])
    saved = prices.cost_nanos(MODEL, usage) - answered["cost_nanos"]
    assert saved > 0 and answered["savings_nanos"] == saved
    assert orjson.loads(answered["policies"])["fallback"] == {
        "mark": "fallback", "mechanism": "fallback", "basis": "counterfactual", "saved_nanos": saved}
    assert metric(proxy, "thriftgate_fallbacks_total", **{"from": MODEL, "to": MINI, "reason": "unavailable"}) == 1
    assert metric(proxy, "thriftgate_savings_usd_total", mechanism="fallback", policy="fallback",
                  basis="counterfactual") == pytest.approx(saved / 1e9)


async def test_a_fallback_to_a_dearer_model_is_a_negative_saving(start_routed, primary) -> None:
    primary.faults(rate=1.0, choices=("500",))
    proxy = await start_routed(deployment("a", primary, models=(MINI,)), fallbacks=[chain(MODEL, source=MINI)],
                               retries=0)
    status, _, headers = await post(proxy, {**CHAT, "model": MINI})
    assert status == 200 and headers["x-thriftgate-fallback"] == MODEL
    answered = (await rows(proxy, headers["x-thriftgate-request-id"]))[-1]
    assert answered["savings_nanos"] < 0 and answered["fallback"] == "unavailable"


@pytest.mark.parametrize("fault,reason", [("429", "rate_limited"), ("context", "context_window_exceeded")])
async def test_fallbacks_follow_their_reasons(start_routed, primary, fault, reason) -> None:
    primary.faults(rate=1.0, choices=(fault,), retry_after="30")
    proxy = await start_routed(deployment("a", primary), fallbacks=[chain(MINI, on=(reason,))])
    status, _, headers = await post(proxy)
    assert status == 200 and headers["x-thriftgate-fallback"] == MINI
    assert primary.served == 1  # neither a rate limit for 30 s nor a prompt too long is worth a retry
    assert (await rows(proxy, headers["x-thriftgate-request-id"]))[-1]["fallback"] == reason


async def test_a_failure_its_fallback_is_not_for_is_relayed(start_routed, primary) -> None:
    primary.faults(rate=1.0, choices=("429",), retry_after="30")
    proxy = await start_routed(deployment("a", primary), fallbacks=[chain(MINI, on=("unavailable",))])
    status, body, headers = await post(proxy)
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded" and "x-thriftgate-fallback" not in headers



@pytest.mark.parametrize("stream", [False, True])
async def test_a_fallback_that_fails_too_is_not_named_as_what_answered(start_routed, primary, secondary,
                                                                        stream) -> None:
    """x-thriftgate-fallback names the model that served the answer; an error answer was served by none."""
    primary.faults(rate=1.0, choices=("503",))
    secondary.faults(rate=1.0, choices=("500",))
    proxy = await start_routed(deployment("a", primary), deployment("b", secondary, models=(MINI,)),
                               fallbacks=[chain(MINI)], retries=0)
    status, body, headers = await post(proxy, {**CHAT, "stream": stream})
    assert status == 500 and body["error"]["type"] == "server_error"  # the fallback's own answer, as it came
    assert "x-thriftgate-fallback" not in headers
    assert (headers["x-thriftgate-model"], headers["x-thriftgate-upstream"], headers["x-thriftgate-attempts"]) == (
        MINI, "b", "2")
    answered = (await rows(proxy, headers["x-thriftgate-request-id"]))[-1]
    assert (answered["model"], answered["fallback"]) == (MINI, "unavailable")  # the ledger keeps why it moved

async def test_chains_go_on_to_the_fallbacks_of_a_fallback(start_routed, primary, secondary) -> None:
    primary.faults(rate=1.0, choices=("503",))
    secondary.faults(rate=1.0, choices=("503",))
    proxy = await start_routed(deployment("a", primary), deployment("b", secondary, models=(MINI,)),
                               fallbacks=[chain(MINI), chain("gpt-4.1-mini", source=MINI)], retries=0)
    status, _, headers = await post(proxy)
    assert status == 200 and headers["x-thriftgate-fallback"] == "gpt-4.1-mini"
    assert headers["x-thriftgate-attempts"] == "3"


async def test_every_deployment_cooling_down_goes_to_the_fallback_without_trying(start_routed, primary) -> None:
    primary.faults(rate=1.0, choices=("503",))
    proxy = await start_routed(deployment("a", primary), fallbacks=[chain(MINI)], retries=0,
                               cooldown={"for": "30s"})
    for _ in range(2):
        assert (await post(proxy))[0] == 200
    status, _, headers = await post(proxy)
    assert status == 200 and headers["x-thriftgate-attempts"] == "1" and primary.served == 2


@pytest.mark.parametrize("value,expected", [("none", 503), ("NONE", 503), (MINI, 200), ("gpt-4.1, gpt-4o-mini", 200),
                                            ("gpt-4.1", 503)])
async def test_a_request_may_narrow_its_fallbacks(start_routed, primary, value, expected) -> None:
    primary.faults(rate=1.0, choices=("503",))
    proxy = await start_routed(deployment("a", primary), fallbacks=[chain(MINI)], retries=0)
    status, body, headers = await post(proxy, headers={"x-thriftgate-fallbacks": value})
    assert status == expected
    if status == 503:  # its own answer, as it came: the fallbacks it allowed are not configured ones
        assert body["error"]["type"] == "server_error" and "x-thriftgate-fallback" not in headers


async def test_a_request_naming_an_unknown_fallback_is_a_400_naming_the_header(start_routed, primary, fake) -> None:
    # No catch-all here: every name is served by one of those.
    proxy = await start_routed(fallbacks=[chain(MINI)],
                               changes={"upstreams": [deployment("a", primary), deployment("m", fake, (MINI,))]})
    status, body, _ = await post(proxy, headers={"x-thriftgate-fallbacks": "gpt-4o-mini, no-such-model"})
    assert status == 400 and body["error"]["param"] == "x-thriftgate-fallbacks"
    assert "no-such-model" in body["error"]["message"] and primary.served == 0


async def test_the_budget_hold_follows_the_fallback_and_refuses_what_it_cannot_cover(start_routed, primary) -> None:
    primary.faults(rate=1.0, choices=("503",))
    # gpt-4o's hold fits a budget that gpt-4.1's (dearer output) does not; gpt-4o-mini fits it too.
    budget = {"scope": "global", "usd": "0.05", "window": "day"}
    proxy = await start_routed(deployment("a", primary), fallbacks=[chain("o1", MINI)], retries=0,
                               changes={"budgets": [budget]})
    body = {**CHAT, "max_tokens": 4000}
    status, _, headers = await post(proxy, body)
    assert status == 200 and headers["x-thriftgate-fallback"] == MINI  # o1's hold was refused: the next one fit
    remaining = float(headers["x-thriftgate-budget-remaining-usd"])
    prices = proxy.app[PRICES]
    answered = (await rows(proxy, headers["x-thriftgate-request-id"]))[-1]
    assert remaining == pytest.approx(0.05 - answered["cost_nanos"] / 1e9, abs=1e-9)
    # Only o1 left: its hold does not fit, and the answer says why, naming both models.
    proxy = await start_routed(deployment("a", primary), fallbacks=[chain("o1")], retries=0,
                               changes={"budgets": [budget]})
    status, body, _ = await post(proxy, body)
    assert status == 429 and body["error"]["code"] == "budget_exceeded"
    assert f"'{MODEL}' failed" in body["error"]["message"] and "'o1'" in body["error"]["message"]
    assert prices.estimate_nanos("o1", 20, 4000) > 0.05e9


async def test_a_cascade_try_goes_through_the_deployments(start_routed, primary, secondary, fake) -> None:
    primary.faults(rate=1.0, choices=("503",))
    proxy = await start_routed(deployment("a", primary, models=(MINI,)), deployment("b", secondary, models=(MINI,)),
                               strategy="least_busy",
                               changes={"policies": [{"type": "cascade", "try": MINI}]})
    status, body, headers = await post(proxy)
    assert status == 200 and body["model"] == "gpt-4o-mini-2024-07-18"
    assert (headers["x-thriftgate-upstream"], headers["x-thriftgate-attempts"]) == ("b", "2")
    assert len(fake.requests) == 0  # accepted: gpt-4o itself was never asked


@pytest.mark.parametrize("stream", [False, True])
async def test_a_fallback_crosses_providers(start_routed, primary, claude, stream) -> None:
    """gpt-4o on its OpenAI deployment fails; claude-sonnet-4-5 on Anthropic answers the OpenAI client, translated."""
    primary.faults(rate=1.0, choices=("503",))
    claude_upstream = {"name": "claude", "base_url": claude.base_url, "provider": "anthropic",
                       "api_key_env": ANTHROPIC_KEY_ENV, "models": ["claude-*"]}
    proxy = await start_routed(claude_upstream, deployment("a", primary), fallbacks=[chain("claude-sonnet-4-5")],
                               retries=0)
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(**CHAT, stream=stream)
        if stream:
            text = "".join([chunk.choices[0].delta.content or "" async for chunk in raw.parse() if chunk.choices])
        else:
            text = raw.parse().choices[0].message.content
    assert len(text.split()) == 40 and claude.requests[-1].path == "/v1/messages"
    assert claude.requests[-1].body["model"] == "claude-sonnet-4-5"
    assert (raw.headers["x-thriftgate-fallback"], raw.headers["x-thriftgate-upstream"]) == ("claude-sonnet-4-5",
                                                                                           "claude")
    answered = (await rows(proxy, raw.headers["x-thriftgate-request-id"]))[-1]
    assert (answered["model"], answered["fallback"], answered["upstream"]) == ("claude-sonnet-4-5", "unavailable",
                                                                              "claude")
    assert answered["cost_nanos"] > 0 and answered["savings_nanos"] < 0  # dearer than gpt-4o on the same tokens
