"""Deployment health as state: failures in a row, cooldowns, Retry-After rests and the one probe after a cooldown.

Two stores pass one contract suite (tests/resilience/test_health_store.py): MemoryHealthStore (one
process) and RedisHealthStore (store/health_redis.py, shared by every replica). Every transition is one
atomic step of the store, decided by the rules below (the Redis store runs them as a Lua script):

- a failure adds to the deployment's run of failures (a run older than `within` starts again); at
  `after_failures` the deployment cools down for `cool_for` and then needs a probe;
- a failure with a Retry-After rests it until then (no probe needed: the provider said when);
- while it cools or rests, failures of requests sent before change nothing;
- once the cooldown is over, one request may claim the probe (for `lease` seconds); its success puts the
  deployment back in rotation, its failure cools it down again;
- any other success ends a run of failures, but never a cooldown (it may have been sent before it).

Callers pass `now` (unix seconds): the clock is theirs, so replicas and tests agree.
"""

from dataclasses import dataclass, replace
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DeploymentHealth:
    until: float = 0.0  # out of rotation until then: cooling down, or resting after a Retry-After
    probe: bool = False  # cooled down: after `until`, one request probes it before the others follow
    failures: int = 0  # failures in a row, the first of them at `since`
    since: float = 0.0
    claimed_until: float = 0.0  # a probe is in flight until then

    def usable(self, now: float) -> bool:
        return self.until <= now and not self.probe

    def probe_claimable(self, now: float) -> bool:
        return self.probe and self.until <= now and self.claimed_until <= now


HEALTHY = DeploymentHealth()


@dataclass(frozen=True, slots=True)
class CooldownRule:
    after_failures: int
    within: float
    cool_for: float


def after_failure(state: DeploymentHealth, now: float, rule: CooldownRule, *, probe: bool,
                  rest_until: float) -> DeploymentHealth:
    if probe:
        return DeploymentHealth(until=max(now + rule.cool_for, rest_until), probe=True)
    if state.until > now or state.probe:
        return replace(state, until=max(state.until, rest_until))
    run = state.failures + 1 if state.failures and now - state.since <= rule.within else 1
    since = state.since if run > 1 else now
    if run >= rule.after_failures:
        return DeploymentHealth(until=max(now + rule.cool_for, rest_until), probe=True)
    return DeploymentHealth(until=rest_until if rest_until > now else 0.0, failures=run, since=since)


def after_success(state: DeploymentHealth, now: float, *, probe: bool) -> DeploymentHealth:
    if probe or not (state.probe or state.until > now):
        return HEALTHY
    return state


def after_claim(state: DeploymentHealth, now: float, lease: float) -> DeploymentHealth | None:
    """The state with the probe claimed, or None when it cannot be claimed now."""
    return replace(state, claimed_until=now + lease) if state.probe_claimable(now) else None


class HealthStore(Protocol):
    backend: str
    shared: bool  # replicas see one another's failures, cooldowns and probes

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def failed(self, name: str, now: float, rule: CooldownRule, *, probe: bool,
                     rest_until: float) -> DeploymentHealth:
        """Raises StoreUnavailable (store/__init__.py) when a shared store cannot be reached."""

    async def succeeded(self, name: str, now: float, *, probe: bool) -> DeploymentHealth: ...

    async def claim_probe(self, name: str, now: float, lease: float) -> bool: ...

    async def snapshot(self, names: tuple[str, ...]) -> dict[str, DeploymentHealth]:
        """The state of each named deployment that is not plainly healthy."""


class MemoryHealthStore:
    backend = "memory"
    shared = False

    def __init__(self) -> None:
        self._states: dict[str, DeploymentHealth] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def failed(self, name: str, now: float, rule: CooldownRule, *, probe: bool,
                     rest_until: float) -> DeploymentHealth:
        return self._set(name, after_failure(self._states.get(name, HEALTHY), now, rule, probe=probe,
                                             rest_until=rest_until))

    async def succeeded(self, name: str, now: float, *, probe: bool) -> DeploymentHealth:
        return self._set(name, after_success(self._states.get(name, HEALTHY), now, probe=probe))

    async def claim_probe(self, name: str, now: float, lease: float) -> bool:
        claimed = after_claim(self._states.get(name, HEALTHY), now, lease)
        if claimed is not None:
            self._set(name, claimed)
        return claimed is not None

    async def snapshot(self, names: tuple[str, ...]) -> dict[str, DeploymentHealth]:
        return {name: self._states[name] for name in names if name in self._states}

    def _set(self, name: str, state: DeploymentHealth) -> DeploymentHealth:
        if state == HEALTHY:
            self._states.pop(name, None)
        else:
            self._states[name] = state
        return state
