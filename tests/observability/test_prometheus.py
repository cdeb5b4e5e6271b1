"""Prometheus' view of a real thriftgate: the deploy config and rules, and every dashboard query on live data."""

import fnmatch
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from proxy.accounting.money import NANOS_PER_USD
from tests.conftest import RunningProxy
from tests.observability import dashboards
from tests.observability.prometheus import Prometheus, running_prometheus
from tests.observability.tools import POLICY_ROUND, ROOT, WORKLOAD, eventually, require, send_batch, send_round

DEPLOY = ROOT / "deploy" / "prometheus"
ALERTS = DEPLOY / "alerts.yml"


@pytest.mark.parametrize("args", [
    ("check", "config", str(DEPLOY / "prometheus.yml")),
    ("check", "rules", str(ALERTS)),
    ("test", "rules", str(Path(__file__).with_name("alerts_test.yml"))),
    ("test", "rules", str(Path(__file__).with_name("budget_alerts_test.yml"))),
], ids=" ".join)
def test_promtool(args: tuple[str, ...]) -> None:
    result = subprocess.run([require("promtool", "prometheus"), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_every_dashboard_query_returns_data_and_the_totals_match_the_ledger(
    workload_proxy: RunningProxy, tmp_path: Path
) -> None:
    proxy = workload_proxy
    async with running_prometheus(tmp_path, [f"127.0.0.1:{proxy.port}"], [ALERTS]) as prometheus:
        # Two rounds with a scrape between them, so that every rate() has two different samples.
        for _ in range(2):
            await send_batch(proxy.url)  # first: the requests after it show the budgets it settled
            await send_round(proxy.url)
            await send_round(proxy.url, POLICY_ROUND)
            served = _requests_total(proxy)  # more than were sent: an escalated cascade's try is a request too
            await eventually(lambda: _scraped(prometheus, served), what=f"Prometheus to scrape {served} requests")
        await _one_more_scrape(prometheus)  # a series new in the last scrape has one sample: too few for rate()

        for path in dashboards.DASHBOARDS:
            board = dashboards.load(path)
            for where, expr in dashboards.panel_queries(board):
                values = await prometheus.finite_values(dashboards.promql(expr, board))
                assert values, f"{where}: no data for {dashboards.promql(expr, board)}"
            for name, metric, label in dashboards.label_queries(board):
                assert await prometheus.query(f"count by ({label}) ({metric})"), f"${name}: no values"

        rows = await proxy.ledger.recent(10_000)
        await _assert_spend_matches(prometheus, proxy)
        await _assert_policies_match(prometheus, rows)
        await _assert_budgets_match(prometheus, rows)

        async def unpriced_alert_fires() -> bool:
            return "ThriftgateUnpricedModelTraffic" in await prometheus.firing_alerts()

        await eventually(unpriced_alert_fires, what="the unpriced-traffic alert to fire")


async def _assert_spend_matches(prometheus: Prometheus, proxy: RunningProxy) -> None:
    ledger = {row["model"]: row["cost_nanos"] / NANOS_PER_USD for row in await proxy.ledger.spend(by="model")}
    by_model = await _by(prometheus, 'sum by (model) (thriftgate_spend_usd_total{model=~".*", team=~".*"})', "model")
    assert by_model.keys() == {(model,) for model, usd in ledger.items() if usd}
    for (model,), usd in by_model.items():  # to the nano-dollar, well inside the cent
        assert usd == pytest.approx(ledger[model], abs=1e-9), model
    by_team = await prometheus.scalar("sum(sum by (team) (thriftgate_spend_usd_total))")
    assert by_team == pytest.approx(sum(ledger.values()), abs=1e-9)


async def _assert_policies_match(prometheus: Prometheus, rows: list[dict]) -> None:
    """Per mechanism, policy and basis, the counter adds up what each ledger row saved (escalations, negative
    savings, are in the ledger's net figure only); lookups, actions and errors are the ledger's too."""
    saved: Counter = Counter()
    treated: Counter = Counter()
    for row in rows:
        for policy, entry in orjson.loads(row["policies"] or "{}").items():
            treated[policy] += entry.get("mark") == "treated"
            if entry.get("saved_nanos", 0) > 0 and entry["basis"] != "shadow":
                saved[entry["mechanism"], policy, entry["basis"]] += entry["saved_nanos"] / NANOS_PER_USD
    assert {basis for _, _, basis in saved} == {"counterfactual", "holdout_estimate"}
    metric = await _by(prometheus, "sum by (mechanism, policy, basis) (thriftgate_savings_usd_total)",
                       "mechanism", "policy", "basis")
    assert metric.keys() == saved.keys()
    for key, usd in metric.items():
        assert usd == pytest.approx(saved[key], abs=1e-9), key
    escalated = sum(row["cost_nanos"] for row in rows if (row["error"] or "").startswith("cascade_escalated"))
    net = sum(row["savings_nanos"] for row in rows)
    assert escalated and sum(metric.values()) == pytest.approx((net + escalated) / NANOS_PER_USD, abs=1e-9)

    looked_up: Counter = Counter()
    for row in rows:
        for policy, entry in orjson.loads(row["lookups"] or "{}").items():
            looked_up[policy, entry["result"]] += 1
    assert looked_up["same-answer", "exact-hit"] and looked_up["same-answer", "miss"]
    assert await _by(prometheus, "sum by (policy, result) (thriftgate_lookups_total)", "policy", "result") == looked_up

    actions = await _by(prometheus, "sum by (policy) (thriftgate_policy_actions_total)", "policy")
    acting = ("be-brief", "mini-for-summaries", "cheap-first")  # on every treated request; a lookup on its hits
    assert actions == {(policy,): treated[policy] for policy in acting} | {
        ("same-answer",): looked_up["same-answer", "exact-hit"]}
    errors = await _by(prometheus, "sum by (policy, hook) (thriftgate_policy_errors_total)", "policy", "hook")
    assert errors == {("fragile", "on_response"): treated["fragile"]}


async def _assert_budgets_match(prometheus: Prometheus, rows: list[dict]) -> None:
    """What each budget has left is its amount minus what the ledger's rows in its window cost."""
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    starts = {"day": day.timestamp(), "month": day.replace(day=1).timestamp()}
    remaining = await _by(prometheus, "thriftgate_budget_remaining_usd", "scope", "window")
    expected = {}
    for budget in WORKLOAD["budgets"]:
        kind, _, value = budget["scope"].partition(":")
        applies = {"global": lambda row: True, "model": lambda row: fnmatch.fnmatchcase(row["model"], value),
                   "user": lambda row: row["user"] == value}[kind]
        spent = sum(row["cost_nanos"] or 0 for row in rows if row["ts"] >= starts[budget["window"]] and applies(row))
        if spent:  # a budget no request fitted has no gauge
            expected[budget["scope"], budget["window"]] = float(budget["usd"]) - spent / NANOS_PER_USD
    assert remaining.keys() == expected.keys()
    for key, usd in remaining.items():
        assert usd == pytest.approx(expected[key], abs=1e-9), key
    refused = sum(row["error"] == "budget_exceeded" for row in rows)
    assert refused and await _by(prometheus, "sum by (scope_kind) (thriftgate_budget_rejections_total)",
                                 "scope_kind") == {("user",): refused}


async def _by(prometheus: Prometheus, expr: str, *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(sample["metric"][label] for label in labels): float(sample["value"][1])
            for sample in await prometheus.query(expr)}


def _requests_total(proxy: RunningProxy) -> float:
    return sum(sample.value for metric in proxy.metrics.requests.collect() for sample in metric.samples
               if sample.name.endswith("_total"))


async def _scraped(prometheus: Prometheus, requests: float) -> bool:
    return await prometheus.scalar("sum(thriftgate_requests_total)") == requests


async def _one_more_scrape(prometheus: Prometheus) -> None:
    last = await prometheus.scalar("timestamp(up)")

    async def scraped_again() -> bool:
        return await prometheus.scalar("timestamp(up)") > last

    await eventually(scraped_again, what="one more scrape")
