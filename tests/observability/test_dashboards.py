"""The Grafana dashboards: complete panels, the data source as a variable, and only metrics that exist."""

import aiohttp
import pytest

from tests.conftest import RunningProxy
from tests.observability import dashboards
from tests.observability.tools import POLICY_ROUND, send_batch, send_round

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.mark.parametrize("path", dashboards.DASHBOARDS, ids=lambda path: path.name)
def test_every_panel_has_an_id_a_unit_a_description_and_the_datasource_variable(path) -> None:
    board = dashboards.load(path)
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), f"repeated panel ids: {ids}"
    for panel in board["panels"]:
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']}: no unit"
        assert panel.get("description"), f"{panel['title']}: no description"
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"] and all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]
    variables = dashboards.variables(board)
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name, variable in variables.items():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, name
            assert variable["includeAll"] and variable["allValue"] == ".*", name
    for where, expr in dashboards.panel_queries(board):
        dashboards.promql(expr, board)  # every variable it uses is defined


def test_dashboards_filter_by_team_model_and_upstream() -> None:
    names = {name for path in dashboards.DASHBOARDS for name in dashboards.variables(dashboards.load(path))}
    assert {"datasource", "team", "model", "upstream", "policy", "mechanism", "scope", "window"} <= names
    assert {path.name for path in dashboards.DASHBOARDS} == {
        "spend.json", "proxy-health.json", "savings.json", "budgets.json"}


async def test_every_metric_a_dashboard_names_is_on_the_metrics_page(workload_proxy: RunningProxy) -> None:
    proxy = workload_proxy
    await send_batch(proxy.url)
    await send_round(proxy.url)
    await send_round(proxy.url, POLICY_ROUND)
    async with aiohttp.ClientSession() as session, session.get(proxy.url + "/metrics") as response:
        exposed = {line.split("{")[0].split(" ")[0] for line in (await response.text()).splitlines()
                   if line and not line.startswith("#")}
    for path in dashboards.DASHBOARDS:
        board = dashboards.load(path)
        named = {name for _, expr in dashboards.panel_queries(board) for name in dashboards.METRIC_NAME.findall(expr)}
        named |= {metric for _, metric, _ in dashboards.label_queries(board)}
        assert named, path.name
        assert named <= exposed, f"{path.name} names metrics /metrics does not have: {sorted(named - exposed)}"
