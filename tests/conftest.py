"""Shared fixtures: the fake upstream, and thriftgate apps built from config made in code."""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from proxy.app import make_app
from proxy.appkeys import LEDGER, METRICS
from proxy.config import validate
from proxy.ledger import Ledger
from proxy.metrics import Metrics
from tests.fake_upstream import FakeUpstream

UPSTREAM_KEY_ENV = "THRIFTGATE_TEST_UPSTREAM_KEY"


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        monkeypatch.setenv(UPSTREAM_KEY_ENV, upstream.api_key)
        yield upstream


@dataclass
class RunningProxy:
    app: web.Application
    server: TestServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def ledger(self) -> Ledger:
        return self.app[LEDGER]

    @property
    def metrics(self) -> Metrics:
        return self.app[METRICS]


def base_config(upstream_url: str, tmp_path: Path) -> dict[str, Any]:
    return {
        "server": {"access_log": False},
        "upstreams": [{"name": "fake", "base_url": upstream_url, "api_key_env": UPSTREAM_KEY_ENV}],
        "ledger": {"path": str(tmp_path / "ledger.db")},
    }


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


StartProxy = Callable[..., Awaitable[RunningProxy]]


@pytest.fixture
async def start_proxy(fake: FakeUpstream, tmp_path: Path) -> AsyncIterator[StartProxy]:
    running: list[TestServer] = []

    async def start(**changes: Any) -> RunningProxy:
        config = validate(merged(base_config(fake.base_url, tmp_path), changes))
        app = make_app(config, registry=CollectorRegistry())
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        running.append(server)
        return RunningProxy(app, server)

    yield start
    for server in running:
        await server.close()


@pytest.fixture
async def proxy(start_proxy: StartProxy) -> RunningProxy:
    return await start_proxy()
