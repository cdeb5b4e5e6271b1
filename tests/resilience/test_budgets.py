"""Budgets hold across retries and fallbacks: two replicas sharing Redis, a failing primary, a fallback model,
attempts billed on their own; what the ledgers record never passes the budget."""

import asyncio
import itertools
from collections import Counter
from decimal import Decimal

import aiohttp

from proxy.accounting.money import NANOS_PER_USD
from proxy.accounting.pricing import PriceTable, default_pricing_path
from tests.resilience.conftest import CHAT, MODEL, deployment
from tests.shared import REDIS_URL

MAX_TOKENS = 200
MINI = "gpt-4o-mini"  # failing often, falling back to gpt-4o: 16 times its price
REQUESTS = 60


async def test_two_replicas_never_overspend_across_retries_and_fallbacks(
    start_routed, primary, secondary, redis_prefix, tmp_path
) -> None:
    primary.faults(rate=0.7, choices=("429", "500", "stall"), seed=3, retry_after="0.05")
    secondary.faults(rate=0.7, choices=("503", "stall"), seed=4)
    hold = PriceTable.load([default_pricing_path()], {}).estimate_nanos(MODEL, 20, MAX_TOKENS)  # the dearer
    budget = Decimal(4 * hold) / NANOS_PER_USD  # a few fallbacks' worth
    replicas = [await start_routed(
        deployment("a", primary, (MINI,)), deployment("b", secondary, (MINI,)),
        fallbacks=[{"from": MINI, "to": [MODEL]}], retries=1,
        timeouts={"total": "1s"},  # a stall of a whole answer ends there (a stream's at its first token)
        changes={"store": {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": redis_prefix},
                 "ledger": {"path": str(tmp_path / f"ledger-{i}.db")},
                 "budgets": [{"scope": "global", "usd": str(budget), "window": "day"}]},
    ) for i in range(2)]
    body = {**CHAT, "model": MINI, "max_tokens": MAX_TOKENS}
    bodies = itertools.cycle([body, {**body, "stream": True}])

    async def one(session: aiohttp.ClientSession, index: int, body: dict) -> int:
        url = replicas[index % 2].base_url + "/chat/completions"
        async with session.post(url, json=body) as response:
            await response.read()
            return response.status

    async with aiohttp.ClientSession() as session:
        statuses = Counter(await asyncio.gather(*(one(session, i, next(bodies)) for i in range(REQUESTS))))
    rows = [row for proxy in replicas for row in await proxy.ledger.recent(10_000)]
    spent = sum(row["cost_nanos"] or 0 for row in rows)
    assert 0 < spent <= budget * NANOS_PER_USD
    assert statuses[200] and statuses[429], statuses  # served until the budget said no
    assert any(row["parent_id"] for row in rows) and any(row["fallback"] for row in rows)
