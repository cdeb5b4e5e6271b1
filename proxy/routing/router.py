"""The router: picks the deployment an attempt goes to, among those of the model that are up.

Strategies: `weighted` (at random, in proportion to weight), `least_busy` (fewest requests in flight for
its weight), `lowest_latency` (the quickest to first byte lately; one not yet measured is tried first).
A deployment out of rotation (cooling down, resting after a Retry-After, past its own rpm or tpm this
minute) is skipped; one whose cooldown is over is given to the request that claims its probe, before any
other. A model with one deployment and no limits of its own costs one dict lookup.
"""

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from proxy.routing.deployments import Route
from proxy.routing.health import SYNC_SECONDS, Health
from proxy.upstream_types import Upstream

LATENCY_WEIGHT = 0.2  # of the newest sample in the running average


@dataclass(slots=True)
class Load:
    """What this process sees of one deployment: in flight now, latency lately, use this minute."""

    in_flight: int = 0
    latency: float = 0.0  # seconds to first byte, running average; 0 until measured
    minute: int = 0
    requests: int = 0  # this minute
    tokens: int = 0  # this minute

    def this_minute(self, now: float) -> "Load":
        minute = int(now // 60)
        if minute != self.minute:
            self.minute, self.requests, self.tokens = minute, 0, 0
        return self


@dataclass(frozen=True, slots=True)
class Unavailable:
    reason: str  # unavailable (cooling down) | rate_limited (resting after a Retry-After, or at its own limits)
    back_at: float  # unix time when the first deployment may be tried again
    probing: bool = False  # the first is being probed now: back as soon as the probe answers


class Router:
    def __init__(self, health: Health, *, clock: Callable[[], float] = time.time) -> None:
        self._health = health
        self._clock = clock
        self.loads: dict[str, Load] = {}
        self._choose = self._weighted

    def configure(self, strategy: str, names: tuple[str, ...]) -> None:
        self._choose = {"weighted": self._weighted, "least_busy": self._least_busy,
                        "lowest_latency": self._lowest_latency}[strategy]
        self.loads = {name: self.loads.get(name) or Load() for name in names}

    async def pick(self, route: Route, tried: tuple[str, ...] = ()) -> tuple[Upstream, bool] | None:
        """A deployment not yet tried by this request, and whether this attempt is its probe; None when none is up."""
        now = self._clock()
        states = self._health.states
        only = route.single
        if only is not None and not tried:
            state = states.get(only.name)
            if state is None or state.usable(now):
                return only, False
        usable = []
        for deployment in route.deployments:
            if deployment.name in tried:
                continue
            state = states.get(deployment.name)
            if state is not None and not state.usable(now):
                if state.probe_claimable(now) and await self._health.claim(deployment.name):
                    return deployment, True
                continue
            if (deployment.rpm or deployment.tpm) and self._at_limits(deployment, now):
                continue
            usable.append(deployment)
        if not usable:
            return None
        return (usable[0] if len(usable) == 1 else self._choose(usable)), False

    def unavailable(self, route: Route) -> Unavailable | None:
        """Why no deployment of the route is up, and when the first is back; None when one is up."""
        now = self._clock()
        found = None
        for deployment in route.deployments:
            state = self._health.states.get(deployment.name)
            if state is not None and not state.usable(now):
                if state.probe and state.until <= now:  # its probe is in flight
                    candidate = Unavailable("unavailable", now + SYNC_SECONDS, probing=True)
                else:
                    candidate = Unavailable("unavailable" if state.probe else "rate_limited", state.until)
            elif (deployment.rpm or deployment.tpm) and self._at_limits(deployment, now):
                candidate = Unavailable("rate_limited", (int(now // 60) + 1) * 60.0)
            else:
                return None
            found = candidate if found is None or candidate.back_at < found.back_at else found
        return found

    def started(self, deployment: Upstream) -> None:
        load = self.loads[deployment.name]
        load.in_flight += 1
        if deployment.rpm or deployment.tpm:
            load.this_minute(self._clock()).requests += 1

    def finished(self, deployment: Upstream) -> None:
        self.loads[deployment.name].in_flight -= 1

    def measured(self, deployment: Upstream, first_byte_seconds: float) -> None:
        load = self.loads[deployment.name]
        load.latency = first_byte_seconds if not load.latency else (
            load.latency + LATENCY_WEIGHT * (first_byte_seconds - load.latency))

    def used(self, deployment: Upstream, tokens: int) -> None:
        """Tokens an answer used, against the deployment's own tokens per minute."""
        if deployment.tpm and tokens:
            self.loads[deployment.name].this_minute(self._clock()).tokens += tokens

    def _at_limits(self, deployment: Upstream, now: float) -> bool:
        load = self.loads[deployment.name].this_minute(now)
        return bool(deployment.rpm and load.requests >= deployment.rpm
                    or deployment.tpm and load.tokens >= deployment.tpm)

    def _weighted(self, usable: list[Upstream]) -> Upstream:
        point = random.random() * sum(d.weight for d in usable)
        for deployment in usable:
            point -= deployment.weight
            if point < 0:
                return deployment
        return usable[-1]

    def _least_busy(self, usable: list[Upstream]) -> Upstream:
        return min(usable, key=lambda d: self.loads[d.name].in_flight / d.weight)

    def _lowest_latency(self, usable: list[Upstream]) -> Upstream:
        return min(usable, key=lambda d: self.loads[d.name].latency)
