"""The Grafana dashboards as data, and their PromQL as Prometheus can run it."""

import json
import re
from collections.abc import Iterator
from pathlib import Path

from tests.observability.tools import ROOT

DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
# Grafana's own variables, as a dashboard evaluated over the last hour with a 15 s scrape sees them.
GRAFANA_VARIABLES = {"__rate_interval": "1m", "__range": "1h", "__interval": "15s"}
METRIC_NAME = re.compile(r"\bthriftgate_[a-z0-9_]+")
LABEL_VALUES = re.compile(r"label_values\((\w+), (\w+)\)")


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def variables(dashboard: dict) -> dict[str, dict]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def panel_queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target."""
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield f"{dashboard['title']} / {panel['title']} / {target['refId']}", target["expr"]


def label_queries(dashboard: dict) -> Iterator[tuple[str, str, str]]:
    """(variable, metric, label) of every `label_values(metric, label)` variable."""
    for variable in variables(dashboard).values():
        if variable["type"] == "query":
            metric, label = LABEL_VALUES.fullmatch(variable["definition"]).groups()
            yield variable["name"], metric, label


def promql(expr: str, dashboard: dict) -> str:
    """The expression with every variable replaced: the dashboard's by `.*` (All), Grafana's by a duration."""
    known = variables(dashboard)

    def value(match: re.Match) -> str:
        name = match[1] or match[2]
        if name in GRAFANA_VARIABLES:
            return GRAFANA_VARIABLES[name]
        assert name in known, f"{expr}: ${name} is not a variable of {dashboard['title']}"
        return ".*"

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)
