"""The policy chain: runs each matching policy's hooks in config order.

Request hooks fail closed (a broken cap is not an open door): any error but a ProxyError becomes a
500 naming the policy. Response and error hooks fail open (the call is already paid for); both kinds
of failure are counted. Holdout and shadow mode are handled here, once, for every policy type.
"""

import copy
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from proxy.errors import ProxyError
from proxy.exchange import Exchange, Saving
from proxy.accounting.metrics import Metrics
from proxy.policies.base import PolicyConfig, Services
from proxy.policies import registry
from proxy.policies.match import Matcher
from proxy.accounting.savings import HoldoutStats

log = logging.getLogger("thriftgate.policies")

Hook = Callable[[Exchange], Awaitable[object]]
TREATED, HELD_OUT, SHADOW = "treated", "held_out", "shadow"


@dataclass(frozen=True, slots=True)
class Entry:
    config: PolicyConfig
    matcher: Matcher
    on_request: Hook | None
    on_response: Hook | None
    on_error: Hook | None
    on_shadow_response: Hook | None  # after the real answer, for a policy in shadow mode (lookups judge it)
    measured_by_holdout: bool  # concise and cap: savings come from comparing with held-out traffic
    name: str  # the policy's name, else its type


class PolicyChain:
    def __init__(
        self, policies: list[tuple[PolicyConfig, object]], services: Services, metrics: Metrics,
        holdout: HoldoutStats,
    ) -> None:
        self._entries = tuple(
            Entry(config, Matcher(config.match), getattr(policy, "on_request", None),
                  getattr(policy, "on_response", None), getattr(policy, "on_error", None),
                  getattr(policy, "on_shadow_response", None), getattr(policy, "MEASURED_BY_HOLDOUT", False),
                  config.name or config.type)
            for config, policy in policies
        )
        self._by_name = {entry.name: entry for entry in self._entries}
        # What each lookup policy reported of its operating point (GET /admin/lookup/operating), by policy.
        self.operating = {config.name or config.type: policy.operating for config, policy in policies
                          if getattr(policy, "operating", None) is not None}
        self._services = services
        self._metrics = metrics
        self._holdout = holdout
        self._random = random.Random()

    def __bool__(self) -> bool:
        return bool(self._entries)

    async def on_request(self, ex: Exchange) -> None:
        for entry in self._entries:
            if not entry.matcher.matches(ex):
                continue
            if entry.config.holdout and self._random.random() < entry.config.holdout:
                ex.policy_marks[entry.name] = HELD_OUT
                continue
            if entry.config.mode == "shadow":
                await self._shadow(entry, ex)
                continue
            ex.policy_marks[entry.name] = TREATED
            if entry.on_request is not None:
                await self._run_request_hook(entry, ex)
                if ex.early_response is not None:
                    return

    async def _run_request_hook(self, entry: Entry, ex: Exchange) -> None:
        try:
            action = await entry.on_request(ex)
        except ProxyError as err:
            self._metrics.policy_action(entry.name, "reject")
            raise err
        except Exception:
            log.exception("policy %s failed on request %s", entry.name, ex.request_id)
            self._metrics.policy_error(entry.name, "on_request")
            raise ProxyError(f"The policy '{entry.name}' failed; the request was not sent.",
                             code="policy_failed") from None
        if action:
            ex.applied.append(entry.name)
            self._metrics.policy_action(entry.name, str(action))

    async def _shadow(self, entry: Entry, ex: Exchange) -> None:
        """Run the hook on a copy: record what it would have done, change nothing."""
        if entry.on_request is None:
            return
        probe = _probe_copy(ex)
        try:
            action = await entry.on_request(probe)
        except ProxyError:
            action = "reject"
        except Exception:
            log.exception("policy %s failed in shadow mode on request %s", entry.name, ex.request_id)
            self._metrics.policy_error(entry.name, "on_request")
            return
        ex.side_cost_nanos = probe.side_cost_nanos  # what a shadow paid beside the answer (an embedding) was paid
        mark = f"{SHADOW}:{action}" if action else SHADOW
        if probe.model != ex.model:
            mark += f"->{probe.model}"
        ex.policy_marks[entry.name] = mark
        if action:
            self._metrics.policy_action(entry.name, f"shadow_{action}")

    async def after_answer(self, ex: Exchange) -> None:
        """Response or error hooks of the treated policies, then savings; never fails the request."""
        failed = ex.status >= 400 or ex.status == 0
        for name, mark in ex.policy_marks.items():
            entry = self._by_name.get(name)
            if entry is None:
                continue
            if mark == TREATED:
                hook = entry.on_error if failed else entry.on_response
                if hook is not None:
                    await self._run_after_hook(entry, hook, ex)
            elif mark.startswith(SHADOW) and not failed:
                if "->" in mark:
                    self._shadow_route_saving(entry, mark.rsplit("->", 1)[1], ex)
                if entry.on_shadow_response is not None:
                    await self._run_after_hook(entry, entry.on_shadow_response, ex)
            if entry.measured_by_holdout and mark in (TREATED, HELD_OUT) and not failed and ex.cost_nanos is not None:
                self._holdout_saving(entry, mark, ex)
        for saving in ex.savings:
            if saving.basis != SHADOW:
                self._metrics.saving(saving)

    async def _run_after_hook(self, entry: Entry, hook: Hook, ex: Exchange) -> None:
        try:
            await hook(ex)
        except Exception:
            log.exception("policy %s failed after request %s", entry.name, ex.request_id)
            self._metrics.policy_error(entry.name, hook.__name__)

    def _shadow_route_saving(self, entry: Entry, would_be_model: str, ex: Exchange) -> None:
        if ex.usage is None or ex.cost_nanos is None:
            return
        would_cost = self._services.prices.cost_nanos(would_be_model, ex.usage)
        if would_cost is not None:
            ex.savings.append(Saving(entry.name, "routing", ex.cost_nanos - would_cost, basis=SHADOW))

    def _holdout_saving(self, entry: Entry, mark: str, ex: Exchange) -> None:
        estimate = self._holdout.observe(entry.name, treated=(mark == TREATED), cost_nanos=ex.cost_nanos)
        if mark == TREATED and estimate:
            ex.savings.append(Saving(entry.name, entry.config.type, estimate, basis="holdout_estimate"))


def _probe_copy(ex: Exchange) -> Exchange:
    probe = copy.copy(ex)
    probe.body = orjson.loads(orjson.dumps(ex.body))
    probe.policy_marks, probe.applied, probe.savings = {}, [], []
    probe.shadow = True
    return probe


def build_chain(configs: tuple[PolicyConfig, ...], services: Services, metrics: Metrics,
                holdout: HoldoutStats) -> PolicyChain:
    return PolicyChain(registry.build(configs, services), services, metrics, holdout)
