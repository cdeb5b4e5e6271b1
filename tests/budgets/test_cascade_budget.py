"""A cascade's attempts are held and counted by budgets exactly once, and never carry a client's key."""

import hashlib

from tests.budgets.test_budgets import chat, request_cost, usd
from tests.conftest import StartProxy

KEY = "tg-" + "k" * 32


async def test_accepted_and_escalated_tries_are_counted_once(start_proxy: StartProxy, fake) -> None:
    mini, big = request_cost("gpt-4o-mini"), request_cost("gpt-4o")
    proxy = await start_proxy(
        pricing={"overrides": {"fake-refusal": {"input": "0.15", "output": "0.60"}}},
        budgets=[{"scope": "global", "usd": usd(10 * big), "window": "day"}],
        # MAX_TOKENS truncates every answer on purpose (cost == estimate), so truncation is not a check here.
        policies=[{"name": "poor-first", "type": "cascade", "try": "fake-refusal", "match": {"tags": ["poor"]},
                   "escalate_on": ["empty", "refusal"]},
                  {"name": "cheap-first", "type": "cascade", "try": "gpt-4o-mini", "match": {"tags": ["cheap"]},
                   "escalate_on": ["empty", "refusal"]}],
    )
    status, _, headers = await chat(proxy, "gpt-4o", headers={"x-thriftgate-tags": "cheap"})  # accepted: the try is paid
    assert status == 200 and headers["x-thriftgate-model"] == "gpt-4o-mini"
    remaining = int(headers["x-thriftgate-budget-remaining-usd"].replace(".", ""))
    assert remaining == 10 * big - mini

    status, _, headers = await chat(proxy, "gpt-4o", headers={"x-thriftgate-tags": "poor"})
    assert status == 200 and headers["x-thriftgate-model"] == "gpt-4o"  # refused by the try: escalated
    refusal_cost = sum(r["cost_nanos"] for r in await proxy.ledger.recent(10) if r["model"] == "fake-refusal")
    assert refusal_cost > 0
    status, _, headers = await chat(proxy, "gpt-4o-mini")  # a plain request reads the budget back
    remaining = int(headers["x-thriftgate-budget-remaining-usd"].replace(".", ""))
    assert remaining == 10 * big - mini - (refusal_cost + big) - mini


async def test_side_calls_never_forward_a_thriftgate_key(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(
        upstreams=[{"name": "open", "base_url": fake.base_url, "api_key_env": None}],
        auth={"required": True, "keys": [{"id": "bot", "team": "support",
                                          "sha256": hashlib.sha256(KEY.encode()).hexdigest()}]},
        policies=[{"type": "cascade", "try": "gpt-4o-mini"}],
    )
    status, _, _ = await chat(proxy, "gpt-4o", headers={"Authorization": f"Bearer {KEY}"})
    assert status == 401  # the upstream has no key of its own, and the client's key is the proxy's
    assert len(fake.requests) == 2  # the try (refused upstream), then the escalation
    assert all(KEY not in (r.headers.get("Authorization") or "") for r in fake.requests)
