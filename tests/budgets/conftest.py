"""Budgets, keys and stores: every test runs against the in-process store and the real Redis.

Redis is the shared one on 127.0.0.1:6379 (also in CI); each test writes under its own key prefix
and deletes only what it wrote. Tests that stop Redis start their own redis-server (tests/budgets/
redis_server.py). Time is a FakeClock the test moves, never a sleep.
"""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis

from proxy.control_config import StoreConfig
from proxy.store import Store
from proxy.store.memory import MemoryStore
from proxy.store.redis import RedisStore

REDIS_URL = "redis://127.0.0.1:6379/0"
# 2025-03-31 23:59:00 UTC: a minute before a day's and a month's end.
END_OF_MARCH = 1743465540.0


class FakeClock:
    def __init__(self, now: float = END_OF_MARCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = f"tgtest:{uuid.uuid4().hex}:"
    yield prefix
    await delete_prefix(REDIS_URL, prefix)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_section(backend: str, redis_prefix: str) -> dict[str, Any]:
    """The `store` config section of a proxy under test."""
    if backend == "memory":
        return {"backend": "memory"}
    return {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": redis_prefix}


@pytest.fixture
async def store(store_section: dict[str, Any]) -> AsyncIterator[Store]:
    store = RedisStore(StoreConfig(**store_section)) if store_section["backend"] == "redis" else MemoryStore()
    await store.start()
    yield store
    await store.close()
