"""The chaos suite's pieces: fake upstreams of its own (each playing the faults it is told, whatever a request
asks), a proxy whose gpt-4o has them as deployments, and small timeouts so that no test waits long."""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.conftest import UPSTREAM_KEY_ENV, RunningProxy, StartProxy, merged
from tests.fake_upstream import FakeUpstream

MODEL = "gpt-4o"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Name three rivers."}]}
# Timeouts and cooldowns a test can wait out: what a production config says in seconds, here in milliseconds.
QUICK = {
    "backoff": {"initial": "5ms", "max": "2s"},
    "timeouts": {"connect": "1s", "first_token": "300ms", "between_chunks": "300ms", "total": "10s"},
    "cooldown": {"after_failures": 2, "within": "60s", "for": "400ms"},
}


@pytest.fixture
async def primary() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
async def secondary() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


def deployment(name: str, fake: FakeUpstream | str, models: tuple[str, ...] = (MODEL,), **extra: Any) -> dict:
    base_url = fake if isinstance(fake, str) else fake.base_url
    return {"name": name, "base_url": base_url, "api_key_env": UPSTREAM_KEY_ENV, "models": list(models), **extra}


def routed(fake: FakeUpstream, *deployments: dict, **routing: Any) -> dict:
    """The proxy's config: the deployments of gpt-4o first, the `fake` fixture serving every other model."""
    return {"upstreams": [*deployments, deployment("catch-all", fake, ("*",))], "routing": merged(QUICK, routing)}


StartRouted = Callable[..., Any]


@pytest.fixture
def start_routed(start_proxy: StartProxy, fake: FakeUpstream) -> StartRouted:
    async def start(*deployments: dict, changes: dict | None = None, **routing: Any) -> RunningProxy:
        return await start_proxy(**{**routed(fake, *deployments, **routing), **(changes or {})})

    return start


async def post(proxy: RunningProxy, body: dict | None = None, *, path: str = "/chat/completions",
               headers: dict[str, str] | None = None) -> tuple[int, dict, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + path, json=body or CHAT, headers=headers or {}) as response:
            return response.status, await response.json(content_type=None), dict(response.headers)


async def rows(proxy: RunningProxy, request_id: str) -> list[dict]:
    """The request's ledger row and those of its failed attempts, attempts first. Its own row is waited for:
    it is recorded as the handler ends, which may be just after the client read a stream's last event."""
    for _ in range(250):
        recent = await proxy.ledger.recent(10_000)
        if any(row["request_id"] == request_id for row in recent):
            break
        await asyncio.sleep(0.02)
    mine = [row for row in recent if row["request_id"] == request_id or row["parent_id"] == request_id]
    return sorted(mine, key=lambda row: (row["parent_id"] is None, row["attempt"]))


def metric(proxy: RunningProxy, name: str, **labels: str) -> float:
    """A sample's value on the proxy's registry (0 when absent)."""
    value = proxy.metrics.registry.get_sample_value(name, labels)
    return value or 0.0
