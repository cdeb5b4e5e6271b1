"""This process's view of its deployments' health, and the one way to change it: through the health store.

The router reads `states` on every request without waiting on anything: only deployments that are not
plainly healthy have an entry, so a healthy fleet costs one dict lookup. Failures, the successes that end a
run of failures, and probe claims go to the store, which decides atomically (shared by every replica with
Redis); its answer updates the view. A task reads the store's state every SYNC_SECONDS, so a replica
learns of another's cooldown within that time, and the up/down gauge follows cooldowns that ran out.
A shared store that cannot be reached is stood in for by this process's own, until it answers again.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from proxy.accounting.metrics import Metrics
from proxy.store import StoreUnavailable
from proxy.store.health import CooldownRule, DeploymentHealth, HealthStore, MemoryHealthStore

log = logging.getLogger("thriftgate.routing")
SYNC_SECONDS = 1.0


class Health:
    def __init__(self, store: HealthStore, metrics: Metrics, *, clock: Callable[[], float] = time.time) -> None:
        self.states: dict[str, DeploymentHealth] = {}
        self._store = store
        self._local = MemoryHealthStore()
        self._metrics = metrics
        self._clock = clock
        self._store_down = False
        self._sync: asyncio.Task | None = None
        self.rule = CooldownRule(3, 60.0, 30.0)
        self.lease = 60.0
        self.names: tuple[str, ...] = ()

    def configure(self, rule: CooldownRule, lease: float, names: tuple[str, ...]) -> None:
        """Settings and deployments (again, on reload): the state of every deployment that stays is kept."""
        self.rule, self.lease, self.names = rule, lease, names
        self.states = {name: state for name, state in self.states.items() if name in names}
        self._show(self._clock())

    @property
    def shared(self) -> bool:
        return self._store.shared

    async def start(self) -> None:
        await self._store.start()
        if self._store.shared:
            await self.refresh()
        self._sync = asyncio.create_task(self._keep_in_step(), name="thriftgate-health-sync")

    async def close(self) -> None:
        if self._sync is not None:
            self._sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync
        await self._store.close()

    async def failed(self, name: str, *, probe: bool, rest_until: float = 0.0) -> None:
        now = self._clock()
        state = await self._ask(lambda store: store.failed(name, now, self.rule, probe=probe, rest_until=rest_until))
        self._set(name, state, now)

    async def succeeded(self, name: str, *, probe: bool) -> None:
        now = self._clock()
        self._set(name, await self._ask(lambda store: store.succeeded(name, now, probe=probe)), now)

    async def claim(self, name: str) -> bool:
        """True when this request is the one to probe the deployment after its cooldown."""
        now = self._clock()
        claimed = await self._ask(lambda store: store.claim_probe(name, now, self.lease))
        state = self.states.get(name)
        if state is not None:  # claimed here or elsewhere: either way nobody else here should try now
            self.states[name] = DeploymentHealth(state.until, state.probe, state.failures, state.since,
                                                 now + (self.lease if claimed else SYNC_SECONDS))
        return claimed

    async def refresh(self) -> None:
        now = self._clock()
        try:
            self.states = await self._store.snapshot(self.names)
            self._came_back()
        except StoreUnavailable:
            self._went_down()
            self.states = await self._local.snapshot(self.names)
        self._show(now)

    async def _ask(self, call):
        if not self._store_down:
            try:
                return await call(self._store)
            except StoreUnavailable:
                self._went_down()
        return await call(self._local)

    def _set(self, name: str, state: DeploymentHealth, now: float) -> None:
        was = self.states.get(name)
        if state.until or state.probe or state.failures or state.claimed_until:
            self.states[name] = state
        else:
            self.states.pop(name, None)
        if (was is None or was.usable(now)) != state.usable(now):
            self._metrics.upstream_up(name, state.usable(now))

    def _show(self, now: float) -> None:
        for name in self.names:
            state = self.states.get(name)
            self._metrics.upstream_up(name, state is None or state.usable(now))

    async def _keep_in_step(self) -> None:
        while True:
            await asyncio.sleep(SYNC_SECONDS)
            try:
                if self._store.shared:
                    await self.refresh()
                else:
                    self._show(self._clock())
            except Exception:  # a bug must not stop the view from following the store
                log.exception("could not read the deployments' health")

    def _went_down(self) -> None:
        if not self._store_down:
            log.warning("the health store is unreachable: this replica decides deployment health alone until it is back")
        self._store_down = True

    def _came_back(self) -> None:
        if self._store_down:
            log.warning("the health store is reachable again: deployment health is shared again")
        self._store_down = False
