"""Opening the configured store: the one place that picks a backend (the package's types sit below both)."""

import asyncio

from proxy.control.config import StoreConfig
from proxy.store import Store, StoreUnavailable, fleet_spend


def open_store(config: StoreConfig) -> Store:
    if config.backend == "redis":
        from proxy.store.redis import RedisStore

        return RedisStore(config)
    from proxy.store.memory import MemoryStore

    return MemoryStore()


def read_fleet_spend(config: StoreConfig, by: str, since: float | None, now: float) -> list[dict]:
    """For the CLI: the fleet's spend rows, read straight from the shared store."""
    if config.backend != "redis":
        raise StoreUnavailable("fleet totals live in Redis: this config has store.backend: memory")

    async def read() -> list[dict]:
        store = open_store(config)
        await store.start()
        try:
            return (await fleet_spend(store, by, since, now))[0]
        finally:
            await store.close()

    return asyncio.run(read())
