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
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from proxy.control.config import StoreConfig
from proxy.errors import BadRequest, RateLimited, ServiceUnavailable
from proxy.exchange import Exchange
from proxy.accounting.metrics import Metrics
from proxy.accounting.money import format_usd
from proxy.accounting.pricing import PriceTable
from proxy.stages.budget_alerts import BudgetAlerts
from proxy.stages.budget_rules import Rule, rules_from_config, window_of
from proxy.store import Charge, Reserved, Settlement, Store, StoreUnavailable, Totals

log = logging.getLogger("thriftgate.budget")

@dataclass(slots=True)
class Reservation:
    """What the reserve stage planned and held for one request; settled once at its end."""

    rules: tuple[Rule, ...]
    slots: tuple[int, ...]  # per rule: the index of its counter in `charges`
    charges: tuple[Charge, ...]
    metrics: tuple[str, ...]  # per counter
    ends: tuple[float, ...]  # per counter: when its window ends
    now: float
    reserved: Reserved | None = None  # None: not checked (the store was down and on_failure is open)
    maybe_held: bool = False  # the store holds (or, after a failed call, may hold) budget for it
    # The request the hold was made for: a cascade's accepted try hands its hold to the main request.
    hold_id: str = ""


class Budgets:
    def __init__(self, rules: tuple[Rule, ...], *, store: Store, store_config: StoreConfig, prices: PriceTable,
                 metrics: Metrics, default_max_output_tokens: int, clock: Callable[[], float] = time.time,
                 alerts: BudgetAlerts | None = None, serve_unpriced: bool = False) -> None:
        self._rules = rules
        self._serve_unpriced = serve_unpriced  # pricing.unpriced: serve, even where a usd budget cannot bound it
        self._alerts = alerts
        self._store = store
        self._prices = prices
        self._metrics = metrics
        self._default_output = default_max_output_tokens
        self._hold_seconds = store_config.reservation_ttl_seconds
        self._fail_closed = store_config.on_failure == "closed"
        self._clock = clock
        self._windows: dict[str, tuple[str, float, float]] = {}
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

    def _plan(self, ex: Exchange, now: float, *, estimate: bool = True,
              metrics: tuple[str, ...] = ("usd", "tokens", "requests"), usd_nanos: int | None = None
              ) -> Reservation | None:
        rules = [rule for rule in self._rules if rule.metric in metrics and rule.applies(ex)]
        if ex.key_budget_nanos is not None and "usd" in metrics:
            rules.append(Rule(f"key:{ex.key_id}", "key", ex.key_id, "usd", "day", ex.key_budget_nanos, labelled=False))
        if not rules:
            return None
        amounts = {"requests": 1, "tokens": 0, "usd": usd_nanos or 0}
        if usd_nanos is None and estimate and any(rule.metric != "requests" for rule in rules):
            money = next((rule for rule in rules if rule.metric == "usd"), None)
            if money is not None and not self._serve_unpriced and self._prices.lookup(ex.model) is None:
                raise _unbounded(ex.model, money.scope)
            prompt, output = self._prompt_tokens(ex), self._max_output(ex)
            amounts["tokens"] = prompt + output
            amounts["usd"] = self._prices.estimate_nanos(ex.model, prompt, output) or 0
        slot_of: dict[str, int] = {}
        charges: list[Charge] = []
        metrics, ends, slots = [], [], []
        for rule in rules:
            window_id, _, end = self._window(rule.window, now)
            counter = f"{rule.metric}:{rule.window}:{window_id}:{rule.scope}"
            slot = slot_of.get(counter)
            if slot is None:
                slot = slot_of[counter] = len(charges)
                ttl = math.ceil(end - now + self._hold_seconds + 60)
                charges.append(Charge(counter, amounts[rule.metric], None, ttl))
                metrics.append(rule.metric)
                ends.append(end)
            if rule.enforced:  # two rules on one counter: the tighter limit holds
                old = charges[slot]
                limit = rule.limit if old.limit is None else min(old.limit, rule.limit)
                charges[slot] = Charge(old.counter, old.amount, limit, old.ttl)
            slots.append(slot)
        return Reservation(tuple(rules), tuple(slots), tuple(charges), tuple(metrics), tuple(ends), now)

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
        slot = plan.reserved.refused
        charge, level = plan.charges[slot], plan.reserved.levels[slot]
        rule = next(r for r, s in zip(plan.rules, plan.slots) if s == slot and r.enforced and r.limit == charge.limit)
        wait = max(math.ceil(plan.ends[slot] - now), 1)
        resets = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(plan.ends[slot]))
        if rule.metric == "usd":
            message = (f"Budget exceeded for {rule.scope}: ${format_usd(rule.limit)} per {rule.window}, of which "
                       f"${format_usd(level)} is spent or reserved, and this request may cost up to "
                       f"${format_usd(charge.amount)}. The budget resets at {resets} (in {wait}s).")
            code = "budget_exceeded"
        else:
            message = (f"Rate limit reached for {rule.scope}: {rule.limit} {rule.metric} per minute, of which "
                       f"{level} are used or reserved, and this request needs {charge.amount}. "
                       f"Try again in {wait}s.")
            code = "rate_limit_exceeded"
        if charge.amount > rule.limit:
            message += " This request alone is larger than the whole limit: lower its max_tokens or prompt."
        self._metrics.budget_rejection(rule.kind)
        headers = {"Retry-After": str(wait), **self._headers(plan, [0] * len(plan.charges), now)}
        return RateLimited(message, code=code, headers=headers)

    # ---- settle ----

    async def settle(self, ex: Exchange) -> None:
        """Always completes, even when the request's task is cancelled while it waits."""
        plan = ex.reservation
        answered = _answered(ex)
        if plan is None and answered and ex.model:
            plan = self._plan(ex, self._clock(), estimate=False)  # answered by a policy: counted, never held
        counters = ()
        if plan is not None:
            actual = self._actual(ex, plan)
            if plan.maybe_held or any(actual):
                counters = tuple((charge.counter, amount, charge.ttl) for charge, amount in zip(plan.charges, actual))
        # The fleet's totals count what was answered (the ledger also has a row for each refusal).
        totals = self._totals(ex) if self._store.shared and answered and ex.model else None
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

    def _actual(self, ex: Exchange, plan: Reservation) -> list[int]:
        tokens = ex.usage.total_tokens if ex.usage is not None else 0
        by_metric = {"usd": ex.cost_nanos or 0, "tokens": tokens, "requests": int(_answered(ex))}
        return [by_metric[metric] for metric in plan.metrics]

    def _totals(self, ex: Exchange) -> Totals:
        usage = ex.usage
        return Totals(
            day=time.strftime("%Y-%m-%d", time.gmtime(ex.received_at)), model=ex.model, team=ex.team, key=ex.key_id,
            prompt_tokens=usage.prompt_tokens if usage else 0, completion_tokens=usage.completion_tokens if usage else 0,
            cached_prompt_tokens=usage.cached_prompt_tokens if usage else 0,
            reasoning_tokens=usage.reasoning_tokens if usage else 0, cost_nanos=ex.cost_nanos,
            cache_write_tokens=usage.cache_write_tokens if usage else 0,
        )

    # ---- headers and metrics ----

    def headers(self, ex: Exchange) -> dict[str, str]:
        """Remaining budget (tightest usd scope) and OpenAI-style rate-limit headers for the answer."""
        plan = ex.reservation
        if plan is None or plan.reserved is None:
            return {}
        used = self._actual(ex, plan) if ex.settled else [charge.amount for charge in plan.charges]
        return self._headers(plan, used, self._clock())

    def _headers(self, plan: Reservation, used: list[int], now: float) -> dict[str, str]:
        tightest: dict[str, tuple[int, Rule, int]] = {}
        for rule, slot in zip(plan.rules, plan.slots):
            remaining = max(rule.limit - plan.reserved.levels[slot] - used[slot], 0)
            if rule.metric not in tightest or remaining < tightest[rule.metric][0]:
                tightest[rule.metric] = (remaining, rule, slot)
        headers = {}
        if "usd" in tightest:
            remaining, rule, _ = tightest["usd"]
            headers["x-thriftgate-budget-remaining-usd"] = format_usd(remaining)
            headers["x-thriftgate-budget-scope"] = rule.scope
        for metric in ("tokens", "requests"):
            if metric in tightest:
                remaining, rule, slot = tightest[metric]
                headers[f"x-ratelimit-limit-{metric}"] = str(rule.limit)
                headers[f"x-ratelimit-remaining-{metric}"] = str(remaining)
                headers[f"x-ratelimit-reset-{metric}"] = _duration(plan.ends[slot] - now)
        return headers

    def _observe_settled(self, counter: str, settled: int) -> None:
        """What a budget's window has settled, as the store learns it: in process (memory) or, with Redis, as
        Redis holds it when this replica writes a batch or renews a lease, so every replica's spend is in it.
        Whichever replica writes last sees the fleet's total: a share passed is alerted on, whichever replica
        passed it. Holds and leases are not spent and do not count."""
        metric, window, window_id, scope = counter.split(":", 3)
        rules = self._watched.get((window, scope)) if metric == "usd" else None
        if not rules:
            return
        current, _, end = self._window(window, self._clock())
        if window_id != current:
            return  # written late for a window that has closed
        for rule in rules:
            self._metrics.budget_remaining(rule.scope, rule.window, max(rule.limit - settled, 0))
            self._metrics.budget_used(rule.scope, rule.window, max(settled, 0) / rule.limit)
            if rule.alerts and self._alerts is not None:
                self._alerts.observe(rule, window_id, end, settled)

    # ---- counting ----

    def _window(self, window: str, now: float) -> tuple[str, float, float]:
        known = self._windows.get(window)
        if known is None or not known[1] <= now < known[2]:
            known = self._windows[window] = window_of(window, now)
        return known

    def _prompt_tokens(self, ex: Exchange) -> int:
        try:
            return ex.prompt_tokens()
        except ValueError as exc:
            raise BadRequest(f"The request cannot be counted to check its budget: {exc}") from None

    def _max_output(self, ex: Exchange) -> int:
        if ex.endpoint == "embeddings":
            return 0
        output = ex.max_output_tokens if ex.max_output_tokens is not None else self._default_output
        body = ex.body or {}
        choices = max(_positive(body.get("n")), _positive(body.get("best_of")), 1)  # every choice is billed
        return output * choices


def _unbounded(model: str, scope: str) -> BadRequest:
    """A usd budget cannot bound what has no price: serving it would spend past the budget unseen."""
    return BadRequest(f"The model '{model}' has no price, so the usd budget of {scope} cannot bound it. The operator "
                      "can price it in pricing.overrides (0 for a model that costs nothing), or serve unpriced models anyway "
                      "with pricing.unpriced: serve.", param="model",
                      code="model_not_priced")


def _answered(ex: Exchange) -> bool:
    """Something was used: tokens, money, or a success (what failed before any answer is released)."""
    return bool(ex.usage is not None and ex.usage.total_tokens or ex.cost_nanos or 0 < ex.status < 400)


def _positive(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _duration(seconds: float) -> str:
    """OpenAI's style for x-ratelimit-reset-*: 20ms, 1s, 6m0s, 1h2m3s."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 0)}ms"
    minutes, secs = divmod(math.ceil(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s" if minutes else f"{secs}s"


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
