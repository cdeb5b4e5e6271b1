"""What a request would charge: the budget rules it touches, each a charge on a window's counter.

A Reservation is the plan for one request: built before it is sent (the most it can cost) and settled
once at its end (what it cost). Windows are computed once per window and reused until they end.
"""

import math
from dataclasses import dataclass

from proxy import openai_wire as wire
from proxy.errors import BadRequest
from proxy.exchange import Exchange
from proxy.accounting.pricing import PriceTable
from proxy.stages.budget_rules import Rule, window_of
from proxy.store import Charge, Reserved

ALL_METRICS = ("usd", "tokens", "requests")


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


class Planner:
    def __init__(self, rules: tuple[Rule, ...], *, prices: PriceTable, default_max_output_tokens: int,
                 hold_seconds: float, serve_unpriced: bool = False) -> None:
        self._rules = rules
        self._serve_unpriced = serve_unpriced  # pricing.unpriced: serve, even where a usd budget cannot bound it
        self._prices = prices
        self._default_output = default_max_output_tokens
        self._hold_seconds = hold_seconds
        self._windows: dict[str, tuple[str, float, float]] = {}

    def plan(self, ex: Exchange, now: float, *, estimate: bool = True, metrics: tuple[str, ...] = ALL_METRICS,
             usd_nanos: int | None = None) -> Reservation | None:
        """None when no rule applies. `estimate`: charge the most the request can cost (else 0 but requests);
        `usd_nanos`: charge that much on the usd budgets instead."""
        rules = [rule for rule in self._rules if rule.metric in metrics and rule.applies(ex)]
        if ex.key_budget_nanos is not None and "usd" in metrics:
            rules.append(Rule(f"key:{ex.key_id}", "key", ex.key_id, "usd", "day", ex.key_budget_nanos, labelled=False))
        if not rules:
            return None
        amounts = {"requests": 1, "tokens": 0, "usd": usd_nanos or 0}
        if usd_nanos is None and estimate and any(rule.metric != "requests" for rule in rules):
            if not self._serve_unpriced and self._prices.lookup(ex.model) is None:
                money = next((rule for rule in rules if rule.metric == "usd"), None)
                if money is not None:
                    raise _unbounded(ex.model, money.scope)
            prompt, output = self._prompt_tokens(ex), self._max_output(ex)
            amounts["tokens"] = prompt + output
            amounts["usd"] = self._prices.estimate_nanos(ex.model, prompt, output) or 0
        slot_of: dict[str, int] = {}
        charges: list[Charge] = []
        metrics, ends, slots = [], [], []
        for rule in rules:
            window_id, _, end = self.window(rule.window, now)
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

    def window(self, window: str, now: float) -> tuple[str, float, float]:
        """The window's id, start and end at `now`."""
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
        return output * wire.choices(ex.endpoint, ex.body or {})  # every choice is billed


def _unbounded(model: str, scope: str) -> BadRequest:
    """A usd budget cannot bound what has no price: serving it would spend past the budget unseen."""
    return BadRequest(f"The model '{model}' has no price, so the usd budget of {scope} cannot bound it. The operator "
                      "can price it in pricing.overrides (0 for a model that costs nothing), or serve unpriced models "
                      "anyway with pricing.unpriced: serve.", param="model", code="model_not_priced")


def answered(ex: Exchange) -> bool:
    """Something was used: tokens, money, or a success (what failed before any answer is released)."""
    return bool(ex.usage is not None and ex.usage.total_tokens or ex.cost_nanos or 0 < ex.status < 400)


def actual(ex: Exchange, plan: Reservation) -> list[int]:
    """Per counter of the plan: what the request really used."""
    tokens = ex.usage.total_tokens if ex.usage is not None else 0
    # A billed failed attempt (parent_id: its request's) is settled beside its request, which counts itself.
    by_metric = {"usd": ex.cost_nanos or 0, "tokens": tokens, "requests": int(answered(ex) and ex.parent_id is None)}
    return [by_metric[metric] for metric in plan.metrics]
