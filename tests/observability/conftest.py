"""A proxy with the policies and budgets of tools.WORKLOAD, for the tests of the savings and budget dashboards."""

import pytest

from proxy.policies import registry
from tests.conftest import RunningProxy, StartProxy
from tests.observability import tools


@pytest.fixture
async def workload_proxy(start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch) -> RunningProxy:
    monkeypatch.setitem(registry.REGISTRY, "fragile", tools.FRAGILE)
    return await start_proxy(**tools.WORKLOAD)
