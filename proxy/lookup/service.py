"""Lookups: what every lookup policy shares, built once by make_app and kept across config reloads.

Embedders by name, the entry store (in-process, or Redis when `store.backend` is redis), the clock,
and the cache writes in flight: a write is spawned off the request path, referenced until it ends,
and drained when the app stops.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from proxy.config import Config, ConfigError
from proxy.lookup.calibration import Verdicts, shadow_verdicts
from proxy.lookup.config import VerifySettings
from proxy.lookup.embedders import Embedder, LocalModels, build_embedder
from proxy.lookup.entries import EntryStore, MemoryEntries
from proxy.lookup.verifier import Verifier, build_verifier
from proxy.accounting.metrics import Metrics
from proxy.accounting.pricing import PriceTable
from proxy.accounting.tokens import TokenCounter
from proxy.stages.upstream import UpstreamClient


log = logging.getLogger("thriftgate.lookup")
DRAIN_SECONDS = 10.0  # how long stopping waits for cache writes still in flight
SHADOW_WINDOW = 30 * 86400.0  # shadow verdicts this recent recalibrate a policy at start


class Lookups:
    def __init__(self, embedders: dict[str, Embedder], entries: EntryStore, metrics: Metrics,
                 clock: Callable[[], float] = time.time, *, upstreams: UpstreamClient | None = None,
                 prices: PriceTable | None = None, models: LocalModels | None = None,
                 shadow: dict[str, Verdicts] | None = None) -> None:
        self._embedders = embedders
        self.entries = entries
        self.clock = clock
        self._metrics = metrics
        self._writes: set[asyncio.Task] = set()
        self._upstreams, self._prices, self._models = upstreams, prices, models or LocalModels()
        self._verifiers: dict[VerifySettings, Verifier] = {}  # one per distinct setting, across reloads
        self.shadow = shadow or {}  # policy -> its shadow verdicts in the ledger when the proxy started
        # policy -> the operating point it reported, of the chain that serves (admin API; set as it is installed)
        self.operating: dict[str, dict[str, Any]] = {}

    def verifier(self, settings: VerifySettings) -> Verifier:
        verifier = self._verifiers.get(settings)
        if verifier is None:
            verifier = self._verifiers[settings] = build_verifier(
                settings, upstreams=self._upstreams, prices=self._prices, models=self._models)
        return verifier

    def verified(self, policy: str, verdict: str, remembered: bool) -> None:
        self._metrics.lookup_verification(policy, verdict, remembered)

    def embedder(self, name: str) -> Embedder:
        try:
            return self._embedders[name]
        except KeyError:
            raise ConfigError(f"the embedder '{name}' is not running: embedders change only on restart") from None

    def count(self, policy: str, result: str) -> None:
        self._metrics.lookup(policy, result)

    def ignored(self, reason: str) -> None:
        self._metrics.lookup_ignored(reason)

    def write(self, write: Coroutine[Any, Any, None], policy: str) -> None:
        task = asyncio.get_running_loop().create_task(write, name=f"thriftgate-lookup-write-{policy}")
        self._writes.add(task)
        task.add_done_callback(lambda done: self._written(done, policy))

    def _written(self, task: asyncio.Task, policy: str) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("lookup policy %s could not store an answer: %r", policy, task.exception())
            self._metrics.policy_error(policy, "write")

    async def start(self) -> None:
        await self.entries.start()
        await asyncio.gather(*(embedder.start() for embedder in self._embedders.values()))

    async def close(self) -> None:
        if self._writes:
            _, late = await asyncio.wait(set(self._writes), timeout=DRAIN_SECONDS)
            for task in late:
                task.cancel()
        for embedder in self._embedders.values():
            await embedder.close()
        for verifier in self._verifiers.values():
            verifier.close()
        await self.entries.close()


def build_lookups(config: Config, *, upstreams: UpstreamClient, prices: PriceTable, tokens: TokenCounter,
                  metrics: Metrics, clock: Callable[[], float], models: LocalModels | None = None) -> Lookups:
    """models: loaded local models to share (tests load one per session); None loads them afresh."""
    models = models or LocalModels()
    embedders = {name: build_embedder(name, embedder, upstreams=upstreams, prices=prices, tokens=tokens,
                                      models=models) for name, embedder in config.embedders.items()}
    if config.store.backend == "redis":
        from proxy.store.lookup_redis import RedisEntries, connect

        # Its own client until the budget store shares one (proxy.store.redis keeps its client private).
        store = config.store
        entries: EntryStore = RedisEntries(
            connect(store), prefix=store.key_prefix, owns_client=True, ignored=metrics.lookup_ignored,
            retry_seconds=store.retry_seconds, block_ms=int(store.timeout_seconds * 500))
    else:
        entries = MemoryEntries()
    shadow = shadow_verdicts(config.ledger, since=clock() - SHADOW_WINDOW) if _semantic(config) else {}
    return Lookups(embedders, entries, metrics, clock, upstreams=upstreams, prices=prices, models=models,
                   shadow=shadow)


def _semantic(config: Config) -> bool:
    return any(getattr(policy, "embedder", None) for policy in config.policies)


LOOKUPS = web.AppKey("lookups", Lookups)


async def running(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: start the store and embedders (a local model loads here), drain writes at the end."""
    await app[LOOKUPS].start()
    yield
    await app[LOOKUPS].close()
