"""Lookup policies on hand-built exchanges: tenant scopes and what is eligible."""

import pytest
from prometheus_client import CollectorRegistry

from proxy.policies import registry
from proxy.config_loading import validate
from proxy.lookup.entries import MemoryEntries
from proxy.lookup.service import Lookups
from proxy.accounting.metrics import Metrics
from proxy.policies.base import Services
from proxy.accounting.usage import Usage
from tests.policies.helpers import PRICES, TOKENS, exchange

ASK = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "How do I enable dark mode?"}]}
ANSWER = {"model": "gpt-4o-mini-2024-07-18", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "Settings, then Display."}, "finish_reason": "stop"}]}


def exact_cache(**settings) -> object:
    config = validate({"policies": [{"type": "exact_cache", **settings}]}).policies[0]
    lookups = Lookups({}, MemoryEntries(), Metrics(CollectorRegistry(), models=PRICES.models), clock=lambda: 1000.0)
    services = Services(prices=PRICES, tokens=TOKENS, side_calls=None, lookups=lookups)
    return registry.REGISTRY["exact_cache"].Policy(config, services), lookups


async def answered(policy, lookups, team: str | None = None, key: str | None = None, **body) -> None:
    ex = exchange("chat", {**ASK, **body})
    ex.team, ex.key_id = team, key
    assert await policy.on_request(ex) is None
    ex.status, ex.answer = 200, ANSWER
    await policy.on_response(ex)
    for write in list(lookups._writes):
        await write


async def hit(policy, team: str | None = None, key: str | None = None, **body) -> bool:
    ex = exchange("chat", {**ASK, **body})
    ex.team, ex.key_id = team, key
    return await policy.on_request(ex) == "exact-hit"


@pytest.mark.parametrize("scope,writer,same,other", [
    ("team", {"team": "support"}, {"team": "support", "key": "k2"}, {"team": "billing"}),
    ("team", {}, {}, {"team": "billing"}),  # no auth: one default tenant, apart from any team
    ("key", {"team": "support", "key": "k1"}, {"team": "billing", "key": "k1"}, {"team": "support", "key": "k2"}),
    ("global", {"team": "support"}, {"team": "billing"}, None),
])
async def test_an_entry_is_seen_only_inside_its_scope(scope, writer, same, other) -> None:
    policy, lookups = exact_cache(scope=scope)
    await answered(policy, lookups, **writer)
    assert await hit(policy, **same)
    if other is not None:
        assert not await hit(policy, **other)


@pytest.mark.parametrize("body", [{"n": 2}, {"logprobs": True}, {"temperature": 0.9}])
async def test_what_is_not_looked_up(body) -> None:
    policy, lookups = exact_cache(max_temperature=0.5)
    await answered(policy, lookups, **body)
    assert not await hit(policy, **body) and not lookups._writes


async def test_a_stored_answer_longer_than_the_output_limit_is_not_served() -> None:
    policy, lookups = exact_cache()
    ex = exchange("chat", ASK)
    await policy.on_request(ex)
    ex.status, ex.answer = 200, ANSWER
    ex.usage = Usage(prompt_tokens=14, completion_tokens=50)
    await policy.on_response(ex)
    await next(iter(lookups._writes))
    assert await hit(policy, max_tokens=100) and not await hit(policy, max_tokens=20)
