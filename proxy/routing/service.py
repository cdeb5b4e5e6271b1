"""Routing as one service: deployments, health and the router, built from the config, rebuilt on reload.

A reload swaps the deployments, the fallbacks and the settings; the health of every deployment that keeps
its name, and what the router measured of it, stay.
"""

import time
from collections.abc import Callable

from proxy.accounting.metrics import Metrics
from proxy.config import Config
from proxy.routing.deployments import Deployments, Route
from proxy.routing.health import Health
from proxy.routing.outcomes import Classifier
from proxy.routing.router import Router
from proxy.stages.upstream import UpstreamClient
from proxy.store.health import CooldownRule, HealthStore


class Routing:
    def __init__(self, config: Config, upstreams: UpstreamClient, store: HealthStore, metrics: Metrics, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # unix time: shared by replicas for cooldowns, per minute for rpm and tpm
        self.health = Health(store, metrics, clock=clock)
        self.router = Router(self.health, clock=clock)
        self._upstreams = upstreams
        self.configure(config)

    def configure(self, config: Config) -> None:
        settings = self.settings = config.routing
        self.upstreams = config.upstreams
        self._upstreams.configure(config.upstreams, settings.timeouts)
        names = tuple(u.name for u in config.upstreams)
        self.deployments = Deployments(config.upstreams, self._upstreams.by_name, settings.fallbacks)
        cooldown = settings.cooldown
        self.health.configure(CooldownRule(cooldown.after_failures, cooldown.within, cooldown.for_),
                              settings.timeouts.connect + settings.timeouts.first_token, names)
        self.router.configure(settings.strategy, names)
        self.classifier = Classifier(settings.retry_on)

    def route(self, model: str) -> Route | None:
        return self.deployments.route(model)

    async def start(self) -> None:
        await self.health.start()

    async def close(self) -> None:
        await self.health.close()
