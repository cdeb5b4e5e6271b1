"""Shared fixtures: the fake upstream, and thriftgate apps built from config made in code."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.app import make_app
from proxy.appkeys import LEDGER, METRICS
from proxy.config_loading import load, validate
from proxy.accounting.ledger import Ledger
from proxy.accounting.metrics import Metrics
from tests.fake_upstream import FakeUpstream, fake_anthropic
from tests.processes import RedisServer
from tests.shared import REDIS_URL, FakeClock, delete_prefix

UPSTREAM_KEY_ENV = "THRIFTGATE_TEST_UPSTREAM_KEY"
ANTHROPIC_KEY_ENV = "THRIFTGATE_TEST_ANTHROPIC_KEY"


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        monkeypatch.setenv(UPSTREAM_KEY_ENV, upstream.api_key)
        yield upstream


@pytest.fixture
async def claude(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeUpstream]:
    """The fake Anthropic provider."""
    async with fake_anthropic() as upstream:
        monkeypatch.setenv(ANTHROPIC_KEY_ENV, upstream.api_key)
        yield upstream


def both_upstreams(openai: FakeUpstream, anthropic: FakeUpstream, **anthropic_settings: Any) -> list[dict[str, Any]]:
    """Claude models to the fake Anthropic, everything else to the fake OpenAI."""
    return [
        {"name": "claude", "base_url": anthropic.base_url, "provider": "anthropic", "api_key_env": ANTHROPIC_KEY_ENV,
         "models": ["claude-*"], **anthropic_settings},
        {"name": "fake", "base_url": openai.base_url, "api_key_env": UPSTREAM_KEY_ENV},
    ]


@dataclass
class RunningProxy:
    app: web.Application
    runner: web.AppRunner
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def ledger(self) -> Ledger:
        return self.app[LEDGER]

    @property
    def metrics(self) -> Metrics:
        return self.app[METRICS]

    async def last_row(self) -> dict:
        """The latest ledger row, once there is one: a request is recorded as its handler ends, which may be
        just after its client read the last byte (a stream's error event)."""
        for _ in range(250):
            if rows := await self.ledger.recent(1):
                return rows[0]
            await asyncio.sleep(0.02)
        raise AssertionError("nothing was recorded in 5 s")


def base_config(upstream_url: str, tmp_path: Path) -> dict[str, Any]:
    return {
        "server": {"access_log": False},
        "upstreams": [{"name": "fake", "base_url": upstream_url, "api_key_env": UPSTREAM_KEY_ENV}],
        "ledger": {"path": str(tmp_path / "ledger.db")},
        # Retries of a failed request wait milliseconds, not the default half second and more (tests/resilience
        # runs the defaults where they matter).
        "routing": {"backoff": {"initial": "5ms"}},
    }


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


StartProxy = Callable[..., Awaitable[RunningProxy]]


@pytest.fixture
async def start_proxy(fake: FakeUpstream, tmp_path: Path) -> AsyncIterator[StartProxy]:
    running: list[web.AppRunner] = []

    async def start(
        *, handler_cancellation: bool = False, config_path: Path | None = None,
        clock: Callable[[], float] = time.time, local_models: Any = None, **changes: Any
    ) -> RunningProxy:
        """A proxy on a free port: config from `config_path`, else the base config with `changes`;
        `clock` is the unix time its budget windows and lookup TTLs follow; `local_models` shares
        loaded embedding models (tests/lookup loads one per session)."""
        config = load(config_path) if config_path else validate(merged(base_config(fake.base_url, tmp_path), changes))
        app = make_app(config, registry=CollectorRegistry(), config_path=config_path, clock=clock,
                       local_models=local_models)
        # As `thriftgate serve` runs: aiohttp's default is not to cancel a handler whose client left.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=handler_cancellation)
        await runner.setup()
        running.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return RunningProxy(app, runner, site._server.sockets[0].getsockname()[1])

    yield start
    for runner in running:
        await runner.cleanup()


@pytest.fixture
async def proxy(start_proxy: StartProxy) -> RunningProxy:
    return await start_proxy()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = f"tgtest:{uuid.uuid4().hex}:"
    yield prefix
    await delete_prefix(REDIS_URL, prefix)


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    await server.start()
    yield server
    await server.stop()
