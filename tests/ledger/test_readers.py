"""What reads the ledger beyond its own reports reads it through the query interface, so it works on both
backends alike: what-if repricing (library, CLI and /admin/whatif) and lookup's shadow verdicts."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from proxy.accounting import ledger_sql as sql
from proxy.accounting.ledger_backends import open_ledger, open_reader
from proxy.analysis.records import spend_rows
from proxy.analysis.whatif import Scenario, whatif
from proxy.cli import main
from proxy.control.config import LedgerConfig
from proxy.lookup import calibration
from tests.analysis.test_whatif import ACTUAL, KNOWN, NOW, PRICES, request
from tests.conftest import StartProxy
from tests.ledger.conftest import DSN_ENV, own_schema, postgres_config

MINI = 800 * 150 + 200 * 75 + 500 * 600 + 300 * 150 + 100 * 600 + 330_000 + 2_010_000  # test_whatif's, by hand
MASTER = "tg-master-for-reader-tests"


@pytest.fixture(params=["sqlite", "postgres"])
async def ledger_config(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        pg_database: str) -> AsyncIterator[LedgerConfig]:
    if request.param == "sqlite":
        yield LedgerConfig(path=str(tmp_path / "ledger.db"))
        return
    async with own_schema(pg_database) as dsn:
        yield postgres_config(dsn, tmp_path, monkeypatch)


async def write(config: LedgerConfig, records) -> None:
    ledger = open_ledger(config)
    await ledger.start()
    for record in records:
        ledger.add(record)
    await ledger.close()


def read(config: LedgerConfig, use):
    """use(reader) on a thread of its own, as the CLI and /admin/whatif do (PostgreSQL's reader runs its own loop)."""
    def run():
        with open_reader(config) as reader:
            return use(reader)
    return asyncio.to_thread(run)


async def test_whatif_reprices_either_backend_to_the_nano_dollar(ledger_config: LedgerConfig) -> None:
    await write(ledger_config, [replace(record, cost_nanos=cost) for record, cost in KNOWN])
    report = await read(ledger_config, lambda reader: whatif(
        lambda: spend_rows(reader, NOW, NOW + 100), Scenario({"gpt-4o": "gpt-4o-mini"}), PRICES, by="tag",
        since=NOW, until=NOW + 100))
    assert (report["total"]["actual_nanos"], report["total"]["whatif_nanos"]) == (ACTUAL, MINI)
    groups = {group["group"]: group["requests"] for group in report["groups"]}
    assert groups == {"summary": 2, "eu": 1, "(no tags)": 4}  # tags from the JSON array column


async def test_rows_are_read_a_page_at_a_time_in_time_order(ledger_config: LedgerConfig) -> None:
    records = [replace(request(n, "gpt-4o", 10, 1), ts=NOW + n // 2, cost_nanos=1) for n in range(7)]
    await write(ledger_config, reversed(records))
    ids = await read(ledger_config, lambda reader: [row["request_id"] for row in reader.iter_rows(
        sql.Filters(NOW, NOW + 3), page=3)])  # pages break between rows of the same second
    assert ids == ["r0", "r1", "r2", "r3", "r4", "r5"]


async def test_the_whatif_command_reads_the_configured_ledger(ledger_config: LedgerConfig, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    await write(ledger_config, [replace(record, cost_nanos=cost) for record, cost in KNOWN])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"ledger": ledger_config.model_dump(exclude_defaults=True)}))
    args = ["whatif", "--config", str(config), "--since", str(NOW), "--model", "gpt-4o=gpt-4o-mini", "--format", "json"]
    assert await asyncio.to_thread(main, args) == 0
    assert json.loads(capsys.readouterr().out)["total"]["whatif_nanos"] == MINI


async def test_shadow_verdicts_are_read_from_either_backend(ledger_config: LedgerConfig) -> None:
    def lookup(n: int, similarity: float, agreed: bool | None) -> object:
        trace = {"faq": {"result": "miss", "shadow": True, "similarity": similarity, "agreed": agreed}}
        return replace(request(n, "gpt-4o", 10, 1), cost_nanos=1, lookups=orjson.dumps(trace).decode())

    await write(ledger_config, [lookup(1, 0.95, True), lookup(2, 0.90, False), lookup(3, 0.97, None)])
    [(policy, verdicts)] = calibration.shadow_verdicts(ledger_config, since=NOW).items()  # the proxy's loop runs
    assert (policy, verdicts.lookups, sorted(verdicts.judged)) == ("faq", 3, [(0.90, False), (0.95, True)])


async def test_admin_whatif_reads_the_fleets_postgresql(start_proxy: StartProxy, pg_dsn: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    monkeypatch.setenv("THRIFTGATE_MASTER_KEY", MASTER)
    proxy = await start_proxy(ledger={"backend": "postgres", "dsn_env": DSN_ENV, "spool_path": str(tmp_path / "spool")})
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Name three rivers."}]}
    async with aiohttp.ClientSession() as session:
        for tags in ("nightly", ""):
            async with session.post(proxy.base_url + "/chat/completions", json=body,
                                    headers={"x-thriftgate-tags": tags}) as response:
                assert response.status == 200
        async with session.get(proxy.url + "/admin/whatif", params={"model": "gpt-4o=gpt-4o-mini", "by": "tag"},
                               headers={"Authorization": f"Bearer {MASTER}"}) as response:
            assert response.status == 200, await response.text()
            report = await response.json()
    paid = sum(row["cost_nanos"] for row in await proxy.ledger.recent(10))
    assert report["total"]["actual_nanos"] == paid and report["total"]["affected_requests"] == 2
    assert {group["group"] for group in report["groups"]} == {"nightly", "(no tags)"}


def retried(n: int) -> list:
    """Request r<n>: refused on gpt-4o (429, nothing billed), then billed for its prompt there (a stall), then
    answered by gpt-4o-mini, its fallback. Each failed attempt is a row of its own (parent_id: the request)."""
    failed = dict(parent_id=f"r{n}", status=502, error="upstream_first_token_timeout", usage_source="estimated")
    return [
        replace(request(n, "gpt-4o-mini", 1000, 100), requested_model="gpt-4o", attempt=3, fallback="unavailable",
                cost_nanos=1000 * 150 + 100 * 600),
        replace(request(n, "gpt-4o", 0, 0), request_id=f"r{n}.1", attempt=1, cost_nanos=0,
                **{**failed, "status": 429, "error": "upstream_rate_limited"}),
        replace(request(n, "gpt-4o", 1000, 0), request_id=f"r{n}.2", attempt=2, cost_nanos=1000 * 2500, **failed),
    ]


async def test_reports_count_requests_and_sum_every_billed_attempt(ledger_config: LedgerConfig) -> None:
    from proxy.analysis import selfhost
    from proxy.analysis.batching import batch_whatif
    from tests.analysis.test_selfhost import PAIR

    answered = replace(request(9, "gpt-4o-mini", 2000, 50), cost_nanos=2000 * 150 + 50 * 600)
    await write(ledger_config, [*retried(1), answered])
    paid = 210_000 + 2_500_000 + 330_000

    def reports(reader) -> tuple[dict, dict, dict]:
        rows = lambda: spend_rows(reader, NOW, NOW + 100)  # noqa: E731
        sizing = selfhost.size(PAIR, context_tokens=1024, prompt_tokens=1000, batch=32)
        return (whatif(rows, Scenario({"gpt-4o": "gpt-4o-mini"}), PRICES, by="model", since=NOW, until=NOW + 100),
                batch_whatif(rows(), PRICES, by="model", tolerant_tags=(), since=NOW, until=NOW + 100),
                selfhost.compare(rows(), sizing, PAIR, PRICES, by="model", window_seconds=3600))

    repriced, batching, hosted = await read(ledger_config, reports)
    total = repriced["total"]
    assert (total["requests"], total["unpriced_requests"], total["actual_nanos"]) == (2, 0, paid)
    assert total["whatif_nanos"] == paid - 2_500_000 + 1000 * 150  # the billed attempt at mini's price
    by_model = {group["group"]: group for group in repriced["groups"]}
    assert (by_model["gpt-4o"]["requests"], by_model["gpt-4o"]["actual_nanos"]) == (0, 2_500_000)
    assert (batching["total"]["requests"], batching["total"]["eligible_requests"]) == (2, 2)
    assert (hosted["total"]["requests"], hosted["total"]["prompt_tokens"]) == (2, 4000)
    assert hosted["total"]["api_usd"] == pytest.approx(paid / 1e9)
