"""Budgets, keys and stores: every test runs against the in-process store and the real Redis.

Redis is the shared one on 127.0.0.1:6379 (also in CI); each test writes under its own key prefix
and deletes only what it wrote (the `redis_prefix` fixture). Tests that stop Redis start their own
redis-server (`own_redis`, tests/processes.py). Time is a FakeClock the test moves, never a sleep.
"""

from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.control.config import StoreConfig
from proxy.store import Store
from proxy.store.memory import MemoryStore
from proxy.store.redis import RedisStore
from tests.shared import REDIS_URL

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
