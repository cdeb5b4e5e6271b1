"""`thriftgate serve --workers 2` with the fleet's stores: a Redis budget and a PostgreSQL ledger stay
exact across workers, and /metrics adds both workers up."""

import asyncio
import os
import re
import signal
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import aiohttp
import asyncpg
import yaml

from tests.budgets.test_budgets import MAX_TOKENS, MESSAGES, request_cost, usd
from tests.conftest import base_config, merged
from tests.ledger.conftest import DSN_ENV, pg_database, pg_dsn  # noqa: F401 (fixtures)
from tests.observability.tools import ROOT, answers, eventually, free_port, running
from tests.shared import REDIS_URL

SERVED, SENT = 40, 120


async def test_two_workers_keep_budget_ledger_and_metrics_exact(fake, tmp_path: Path, redis_prefix: str,
                                                                 pg_dsn: str) -> None:  # noqa: F811
    cost = request_cost()
    config = merged(base_config(fake.base_url, tmp_path), {
        "ledger": {"backend": "postgres", "dsn_env": DSN_ENV, "spool_path": str(tmp_path / "spool")},
        "store": {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": redis_prefix},
        "budgets": [{"scope": "global", "usd": usd(SERVED * cost), "window": "day"}],
    })
    config_path = tmp_path / "thriftgate.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    command = (sys.executable, "-m", "proxy", "serve", "--config", str(config_path), "--port", str(port),
               "--workers", "2")
    env = {**os.environ, DSN_ENV: pg_dsn, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    async with running(*command, cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL,
                       stderr=asyncio.subprocess.DEVNULL) as process:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as session:
            await eventually(lambda: answers(session, url + "/readyz"), timeout=60, what="thriftgate to start")

            async def one(_: int) -> int:
                async with session.post(url + "/v1/chat/completions", json=body) as response:
                    await response.read()
                    return response.status

            statuses = Counter(await asyncio.gather(*(one(i) for i in range(SENT))))
            async with session.get(url + "/metrics") as response:
                metrics = await response.text()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    assert statuses == {200: SERVED, 429: SENT - SERVED}
    spent = re.search(r'thriftgate_spend_usd_total\{model="gpt-4o-mini",team="none"\} (\S+)', metrics)
    assert round(Decimal(spent[1]) * 10**9) == SERVED * cost
    requests = sum(float(v) for v in re.findall(r"^thriftgate_requests_total\{.*\} (\S+)$", metrics, re.M))
    assert requests == SENT
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT status, cost_nanos FROM spend")
    finally:
        await conn.close()
    assert Counter(row["status"] for row in rows) == {200: SERVED, 429: SENT - SERVED}
    assert sum(row["cost_nanos"] or 0 for row in rows) == SERVED * cost
