"""Two thriftgate processes sharing Redis: one budget and one rate limit for the whole fleet, and the
ledgers, the fleet totals in Redis and the metrics agree to the nano-dollar."""

import asyncio
import json
import re
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import aiohttp
import redis.asyncio as redis

from proxy.accounting.ledger import open_readonly
from proxy.accounting.tokens import TokenCounter
from tests.budgets.conftest import REDIS_URL
from tests.budgets.replicas import Replica
from tests.budgets.test_budgets import MAX_TOKENS, MESSAGES, request_cost, usd
from tests.conftest import base_config, merged
from tests.processes import thriftgate
from tests.shared import todays_global_usd

SERVED = 100
SENT = 300
TPM_SERVED = 30


async def inside_a_minute() -> None:
    """Keep a burst inside one calendar minute (and one day): per-minute limits count per minute."""
    left = 60 - time.time() % 60
    if left < 3:
        await asyncio.sleep(left + 0.1)


async def burst(session: aiohttp.ClientSession, replicas: list[Replica], count: int, **headers: str) -> Counter:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": MAX_TOKENS}

    async def one(index: int) -> int:
        url = replicas[index % len(replicas)].url + "/v1/chat/completions"
        async with session.post(url, json=body, headers=headers) as response:
            await response.read()
            return response.status

    return Counter(await asyncio.gather(*(one(i) for i in range(count))))


async def test_two_replicas_share_one_budget_to_the_nano_dollar(fake, tmp_path: Path, redis_prefix: str) -> None:
    cost = request_cost()
    tokens = TokenCounter().for_model("gpt-4o-mini").chat(MESSAGES) + MAX_TOKENS
    replicas = [
        Replica(merged(base_config(fake.base_url, tmp_path), {
            "ledger": {"path": str(tmp_path / f"ledger-{i}.db")},
            "store": {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": redis_prefix},
            "budgets": [{"scope": "global", "usd": usd(SERVED * cost), "window": "day"},
                        {"scope": "user:batch", "tokens_per_minute": TPM_SERVED * tokens}],
        }), tmp_path)
        for i in range(2)
    ]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        try:
            await asyncio.gather(*(replica.start(session) for replica in replicas))
            await inside_a_minute()
            by_tokens = await burst(session, replicas, 3 * TPM_SERVED, **{"x-thriftgate-user": "batch"})
            assert by_tokens == {200: TPM_SERVED, 429: 2 * TPM_SERVED}
            by_usd = await burst(session, replicas, SENT - 3 * TPM_SERVED)
            assert by_usd == {200: SERVED - TPM_SERVED, 429: SENT - 3 * TPM_SERVED - (SERVED - TPM_SERVED)}
            for _ in range(40):  # each replica writes its settlements within a sync interval (store/redis.py)
                fleet = []
                for replica in replicas:
                    async with session.get(replica.url + "/admin/spend", params={"by": "model"}) as response:
                        fleet.append(await response.json())
                if all(answer["rows"] and answer["rows"][0]["requests"] == SERVED for answer in fleet):
                    break
                await asyncio.sleep(0.05)
            metrics = []
            for replica in replicas:
                async with session.get(replica.url + "/metrics") as response:
                    metrics.append(await response.text())
        finally:
            await asyncio.gather(*(replica.stop() for replica in replicas))

    ledger_rows = []
    for i in range(2):
        with open_readonly(tmp_path / f"ledger-{i}.db") as ledger:
            ledger_rows += ledger.recent(1000)
    assert len(ledger_rows) == SENT
    assert sum(row["cost_nanos"] for row in ledger_rows) == SERVED * cost
    assert Counter(row["status"] for row in ledger_rows) == {200: SERVED, 429: SENT - SERVED}

    for answer in fleet:  # either replica shows the whole fleet
        assert answer["source"] == "fleet"
        [row] = answer["rows"]
        assert (row["model"], row["requests"], row["cost_nanos"]) == ("gpt-4o-mini", SERVED, SERVED * cost)

    spent = [re.search(r'thriftgate_spend_usd_total\{model="gpt-4o-mini",team="none"\} (\S+)', text) for text in metrics]
    assert sum(round(Decimal(found[1]) * 10**9) for found in spent) == SERVED * cost
    rejected = Counter()
    for text in metrics:
        for kind, count in re.findall(r'thriftgate_budget_rejections_total\{scope_kind="(\w+)"\} (\S+)', text):
            rejected[kind] += float(count)
    assert rejected == {"user": 2 * TPM_SERVED, "global": SENT - SERVED - 2 * TPM_SERVED}

    result = thriftgate("spend", "--config", str(replicas[0].config_path), "--by", "team", "--json")
    assert result.returncode == 0, result.stderr
    assert [(r["team"], r["requests"], r["cost_nanos"]) for r in json.loads(result.stdout)] == [
        (None, SERVED, SERVED * cost)]  # the fleet's totals, read from Redis

    counter = await todays_global_usd(REDIS_URL, redis_prefix)
    assert int(counter["used"]) == SERVED * cost and int(counter["leased"]) == 0  # stopped replicas gave their leases back
