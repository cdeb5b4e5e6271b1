"""Prometheus' view of a real thriftgate: the deploy config and rules, and every dashboard query on live data."""

import subprocess
from pathlib import Path

import pytest

from proxy.money import NANOS_PER_USD
from tests.conftest import StartProxy
from tests.observability import dashboards
from tests.observability.prometheus import Prometheus, running_prometheus
from tests.observability.tools import ROOT, ROUND, eventually, require, send_round

DEPLOY = ROOT / "deploy" / "prometheus"
ALERTS = DEPLOY / "alerts.yml"


@pytest.mark.parametrize("args", [
    ("check", "config", str(DEPLOY / "prometheus.yml")),
    ("check", "rules", str(ALERTS)),
    ("test", "rules", str(Path(__file__).with_name("alerts_test.yml"))),
], ids=" ".join)
def test_promtool(args: tuple[str, ...]) -> None:
    result = subprocess.run([require("promtool", "prometheus"), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_every_dashboard_query_returns_data_and_spend_matches_the_ledger(
    start_proxy: StartProxy, tmp_path: Path
) -> None:
    proxy = await start_proxy()
    async with running_prometheus(tmp_path, [f"127.0.0.1:{proxy.port}"], [ALERTS]) as prometheus:
        # Two rounds with a scrape between them, so that every rate() has two different samples.
        for sent in (len(ROUND), 2 * len(ROUND)):
            await send_round(proxy.url)
            await eventually(lambda: _scraped(prometheus, sent), what=f"Prometheus to scrape {sent} requests")

        for path in dashboards.DASHBOARDS:
            board = dashboards.load(path)
            for where, expr in dashboards.panel_queries(board):
                values = await prometheus.finite_values(dashboards.promql(expr, board))
                assert values, f"{where}: no data for {dashboards.promql(expr, board)}"
            for name, metric, label in dashboards.label_queries(board):
                assert await prometheus.query(f"count by ({label}) ({metric})"), f"${name}: no values"

        ledger = {row["model"]: row["cost_nanos"] / NANOS_PER_USD for row in await proxy.ledger.spend(by="model")}
        by_model = {sample["metric"]["model"]: float(sample["value"][1]) for sample in
                    await prometheus.query('sum by (model) (thriftgate_spend_usd_total{model=~".*", team=~".*"})')}
        assert by_model.keys() == {model for model, usd in ledger.items() if usd}
        for model, usd in by_model.items():  # to the nano-dollar, well inside the cent
            assert usd == pytest.approx(ledger[model], abs=1e-9), model
        by_team = await prometheus.scalar("sum(sum by (team) (thriftgate_spend_usd_total))")
        assert by_team == pytest.approx(sum(ledger.values()), abs=1e-9)

        async def unpriced_alert_fires() -> bool:
            return "ThriftgateUnpricedModelTraffic" in await prometheus.firing_alerts()

        await eventually(unpriced_alert_fires, what="the unpriced-traffic alert to fire")


async def _scraped(prometheus: Prometheus, requests: int) -> bool:
    return await prometheus.scalar("sum(thriftgate_requests_total)") == requests
