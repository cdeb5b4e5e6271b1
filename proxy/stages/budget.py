"""Budgets and rate limits: reserve the most a request can cost before it is sent; settle to its cost.

reserve (after routing: model, body and output limit are final): every rule the request touches
(team, key, user, model glob, global; usd per calendar window, tokens and requests per minute)
becomes a charge on a counter, and the store holds all of them or none, atomically. A soft limit,
or an exhausted `on_exhausted: downgrade` budget, moves the request to `downgrade_to` (once) and
reserves again for that model. settle (in the pipeline's `finally`; it never waits on I/O):
the holds become what the request really cost; a request that failed before any answer costs 0.
With a shared store, settle also adds the request to the fleet's spend totals. The remaining and
used-ratio gauges and the alerts follow what the store says each budget has settled (Store.on_settled).
"""

import logging
import time
from collections.abc import Callable

from proxy.control.config import StoreConfig
from proxy.errors import RateLimited, ServiceUnavailable
from proxy.exchange import Exchange
from proxy.accounting.metrics import Metrics
from proxy.accounting.pricing import PriceTable
from proxy.stages.budget_alerts import BudgetAlerts
from proxy.stages.budget_answer import answer_headers, refusal
from proxy.stages.budget_plan import Planner, Reservation, actual, answered
from proxy.stages.budget_rules import Rule, rules_from_config
from proxy.store import Settlement, Store, StoreUnavailable, Totals

log = logging.getLogger("thriftgate.budget")


class Budgets:
    def __init__(self, rules: tuple[Rule, ...], *, store: Store, store_config: StoreConfig, prices: PriceTable,
                 metrics: Metrics, default_max_output_tokens: int, clock: Callable[[], float] = time.time,
                 alerts: BudgetAlerts | None = None, serve_unpriced: bool = False) -> None:
        self._alerts = alerts
        self._store = store
        self._metrics = metrics
        self._hold_seconds = store_config.reservation_ttl_seconds
        self._planner = Planner(rules, prices=prices, default_max_output_tokens=default_max_output_tokens,
                                hold_seconds=self._hold_seconds, serve_unpriced=serve_unpriced)
        self._plan = self._planner.plan
        self._fail_closed = store_config.on_failure == "closed"
        self._clock = clock
        self._day: tuple[int, str] = (-1, "")  # the UTC day number and its date, for the fleet's totals
        # (window, scope) -> the configured usd rules on that counter: what the used-ratio, remaining and
        # alerts follow, from the totals the store settles (store.on_settled).
        self._watched: dict[tuple[str, str], list[Rule]] = {}
        for rule in rules:
            if rule.metric == "usd" and rule.labelled:
                self._watched.setdefault((rule.window, rule.scope), []).append(rule)
        if self._watched:
            store.on_settled(self._observe_settled)

    # ---- reserve ----

    async def reserve(self, ex: Exchange, route: Callable[[Exchange], None]) -> None:
        now = self._clock()
        plan = self._plan(ex, now)
        if plan is None:
            return
        await self._hold(ex, plan)
        target = self._downgrade_target(ex, plan)
        if target is not None:
            if plan.reserved.ok:
                try:
                    await self._store.release(ex.request_id, [charge.counter for charge in plan.charges])
                except StoreUnavailable:
                    pass  # the holds die at their deadline
            ex.reservation = None
            ex.set_model(target)
            route(ex)
            plan = self._plan(ex, now)
            if plan is None:
                return
            await self._hold(ex, plan)
        if plan.reserved is None:
            return
        if not plan.reserved.ok:
            ex.reservation = None
            raise self._refusal(plan, now)

    async def reserve_again(self, ex: Exchange, route: Callable[[Exchange], None]) -> None:
        """The request moves on (a fallback model, or a retry after a billed attempt): its hold is released
        and made again at the price of its model as it now stands; refused like any reservation."""
        plan = ex.reservation
        if plan is not None and plan.maybe_held:
            try:
                await self._store.release(plan.hold_id or ex.request_id, [charge.counter for charge in plan.charges])
            except StoreUnavailable:
                pass  # the holds die at their deadline
        ex.reservation = None
        await self.reserve(ex, route)

    async def reserve_requests(self, ex: Exchange) -> None:
        """A passed-through request (no model, no price): counted against the request limits of its scopes."""
        now = self._clock()
        plan = self._plan(ex, now, estimate=False, metrics=("requests",))
        if plan is None:
            return
        await self._hold(ex, plan)
        if plan.reserved is not None and not plan.reserved.ok:
            ex.reservation = None
            raise self._refusal(plan, now)

    async def reserve_batch(self, ex: Exchange, usd_nanos: int) -> Reservation | None:
        """A Batch API job: holds its batch-priced ceiling on every usd budget it touches while the provider
        is asked to take it (per-minute token and request limits do not apply to work the provider runs
        later). Raises RateLimited when it does not fit; commit_batch once the provider took it."""
        plan = self._plan(ex, self._clock(), metrics=("usd",), usd_nanos=usd_nanos)
        if plan is None:
            return None
        await self._hold(ex, plan)
        if plan.reserved is not None and not plan.reserved.ok:
            ex.reservation = None
            raise self._refusal(plan, plan.now)
        return plan

    async def commit_batch(self, ex: Exchange, plan: Reservation) -> None:
        """The provider took the batch: its ceiling counts as spent from now until its lines are priced (the
        job then settles the difference, from whichever replica accounts it). Spent, not held: a hold lives in
        one replica's lease and would die with it, or outlive a settle made by another replica."""
        ex.reservation = None
        counters = tuple((charge.counter, charge.amount, charge.ttl) for charge in plan.charges)
        await self._settle(Settlement(plan.hold_id, self._clock(), counters))

    async def _hold(self, ex: Exchange, plan: Reservation) -> None:
        ex.reservation = plan  # from here on, settle clears whatever the store may hold
        plan.hold_id = ex.request_id
        try:
            plan.reserved = await self._store.reserve(
                ex.request_id, plan.charges, plan.now, plan.now + self._hold_seconds
            )
        except StoreUnavailable as exc:
            plan.maybe_held = exc.attempted  # the call went out: its hold, if any, is released when settled
            if self._fail_closed:
                if not plan.maybe_held:
                    ex.reservation = None
                raise ServiceUnavailable(
                    f"{exc} Requests under a budget are refused until it is back (store.on_failure: closed).",
                    code="budget_store_unavailable",
                ) from None
            plan.reserved = None  # served unheld (store.on_failure: open); counted when the store is back
            return
        plan.maybe_held = plan.reserved.ok

    def _downgrade_target(self, ex: Exchange, plan: Reservation) -> str | None:
        if plan.reserved is None:
            return None
        levels = plan.reserved.levels
        for rule, slot in zip(plan.rules, plan.slots):
            if rule.downgrade_to is None or rule.downgrade_to == ex.model:
                continue
            level = levels[slot]
            past_soft = rule.soft_at is not None and level >= rule.soft_at
            if past_soft or (not rule.enforced and level + plan.charges[slot].amount > rule.limit):
                return rule.downgrade_to
        return None

    def _refusal(self, plan: Reservation, now: float) -> RateLimited:
        error, scope_kind = refusal(plan, now)
        self._metrics.budget_rejection(scope_kind)
        return error

    # ---- settle ----

    async def settle(self, ex: Exchange) -> None:
        """Always completes, even when the request's task is cancelled while it waits."""
        plan = ex.reservation
        was_answered = answered(ex)
        if plan is None and was_answered and ex.model:
            plan = self._plan(ex, self._clock(), estimate=False)  # answered by a policy: counted, never held
        counters = ()
        if plan is not None:
            used = actual(ex, plan, was_answered)
            if plan.maybe_held or any(used):
                counters = tuple((charge.counter, amount, charge.ttl) for charge, amount in zip(plan.charges, used))
        # The fleet's totals count what was answered (the ledger also has a row for each refusal).
        totals = self._totals(ex) if self._store.shared and was_answered and ex.model else None
        if not counters and totals is None:
            return
        settlement = Settlement(plan.hold_id if plan and plan.hold_id else ex.request_id, self._clock(),
                                counters, totals)
        await self._settle(settlement)  # recorded in process (Redis: written in batches): nothing to cut short

    async def _settle(self, settlement: Settlement) -> None:
        try:
            await self._store.settle(settlement)
        except Exception:
            log.exception("could not settle request %s", settlement.id)

    async def close(self) -> None:
        """Gives the budget alerts on their way their time (settlements are the store's to write)."""
        if self._alerts is not None:
            await self._alerts.close()

    def _totals(self, ex: Exchange) -> Totals:
        usage = ex.usage
        return Totals(
            day=self._utc_day(ex.received_at), model=ex.model, team=ex.team, key=ex.key_id,
            prompt_tokens=usage.prompt_tokens if usage else 0, completion_tokens=usage.completion_tokens if usage else 0,
            cached_prompt_tokens=usage.cached_prompt_tokens if usage else 0,
            reasoning_tokens=usage.reasoning_tokens if usage else 0, cost_nanos=ex.cost_nanos,
            cache_write_tokens=usage.cache_write_tokens if usage else 0, request=ex.parent_id is None,
        )

    # ---- headers and metrics ----

    def headers(self, ex: Exchange) -> dict[str, str]:
        """Remaining budget (tightest usd scope) and OpenAI-style rate-limit headers for the answer."""
        plan = ex.reservation
        if plan is None or plan.reserved is None:
            return {}
        used = actual(ex, plan) if ex.settled else [charge.amount for charge in plan.charges]
        return answer_headers(plan, used, self._clock())

    def _observe_settled(self, counter: str, settled: int) -> None:
        """What a budget's window has settled, as the store learns it: in process (memory) or, with Redis, as
        Redis holds it when this replica writes a batch or renews a lease, so every replica's spend is in it.
        Whichever replica writes last sees the fleet's total: a share passed is alerted on, whichever replica
        passed it. Holds and leases are not spent and do not count."""
        metric, window, window_id, scope = counter.split(":", 3)
        rules = self._watched.get((window, scope)) if metric == "usd" else None
        if not rules:
            return
        current, _, end = self._planner.window(window, self._clock())
        if window_id != current:
            return  # written late for a window that has closed
        for rule in rules:
            self._metrics.budget_remaining(rule.scope, rule.window, max(rule.limit - settled, 0))
            self._metrics.budget_used(rule.scope, rule.window, max(settled, 0) / rule.limit)
            if rule.alerts and self._alerts is not None:
                self._alerts.observe(rule, window_id, end, settled)

    def _utc_day(self, at: float) -> str:
        """The UTC date of `at` (YYYY-MM-DD), formatted once a day rather than per request."""
        number = int(at // 86400)
        if number != self._day[0]:
            self._day = (number, time.strftime("%Y-%m-%d", time.gmtime(at)))
        return self._day[1]


def build_budgets(config, *, store: Store, keys_possible: bool, prices: PriceTable, metrics: Metrics,
                  clock: Callable[[], float] = time.time) -> Budgets | None:
    """None when nothing can limit or total a request: no budgets, no keys (which may carry one), no shared store."""
    rules = rules_from_config(config.budgets)
    if not (rules or keys_possible or store.shared):
        return None
    alerts = BudgetAlerts(config.alerting, store, metrics, clock) if any(rule.alerts for rule in rules) else None
    return Budgets(rules, store=store, store_config=config.store, prices=prices, metrics=metrics,
                   default_max_output_tokens=config.budgets_default_max_output_tokens, clock=clock, alerts=alerts,
                   serve_unpriced=config.pricing.unpriced == "serve")
