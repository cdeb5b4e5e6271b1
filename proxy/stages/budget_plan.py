"""What a request would charge: the budget rules it touches, each a charge on a window's counter.

A Reservation is the plan for one request: built before it is sent (the most it can cost) and settled
once at its end (what it cost). Windows are computed once per window and reused until they end.
"""

import math
from collections import OrderedDict
from dataclasses import dataclass

from proxy import openai_wire as wire
from proxy.errors import BadRequest
from proxy.exchange import Exchange
from proxy.accounting.pricing import PriceTable
from proxy.stages.budget_rules import Rule, window_of
from proxy.store import Charge, Reserved

ALL_METRICS = ("usd", "tokens", "requests")
_KEPT_LAYOUTS = 4096  # rule sets (and keys' own rules) kept with their counters' layout


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


@dataclass(slots=True)
class _Layout:
    """What a set of rules charges while the windows current at `start` last (until `end`): a plan but its
    amounts and ttls, made once per rule set and window instead of per request."""

    rules: tuple[Rule, ...]
    slots: tuple[int, ...]  # per rule: the index of its counter
    counters: tuple[tuple[str, str, int | None, float], ...]  # (name, metric, limit, the earliest it may expire)
    metrics: tuple[str, ...]  # per counter
    ends: tuple[float, ...]  # per counter
    money_scope: str | None  # the first usd rule's scope: an unpriced model cannot be bounded there
    spends: bool  # a rule counts tokens or usd: the request's size is needed
    start: float
    end: float


class Planner:
    def __init__(self, rules: tuple[Rule, ...], *, prices: PriceTable, default_max_output_tokens: int,
                 hold_seconds: float, serve_unpriced: bool = False) -> None:
        self._rules = rules
        self._serve_unpriced = serve_unpriced  # pricing.unpriced: serve, even where a usd budget cannot bound it
        self._prices = prices
        self._default_output = default_max_output_tokens
        self._hold_seconds = hold_seconds
        self._windows: dict[str, tuple[str, float, float]] = {}
        # Found by the identities of their rules (a layout holds its rules, so no id is reused while it is here).
        # Least recently used out: a key's own budget makes a rule set per key.
        self._layouts: OrderedDict[tuple[int, ...], _Layout] = OrderedDict()
        self._key_rules: OrderedDict[tuple[str, int], Rule] = OrderedDict()

    def plan(self, ex: Exchange, now: float, *, estimate: bool = True, metrics: tuple[str, ...] = ALL_METRICS,
             usd_nanos: int | None = None) -> Reservation | None:
        """None when no rule applies. `estimate`: charge the most the request can cost (else 0 but requests);
        `usd_nanos`: charge that much on the usd budgets instead."""
        rules = [rule for rule in self._rules if rule.metric in metrics and rule.applies(ex)]
        if ex.key_budget_nanos is not None and "usd" in metrics:
            rules.append(self._key_rule(ex.key_id, ex.key_budget_nanos))
        if not rules:
            return None
        layout = self._layout(rules, now)
        tokens, usd = 0, usd_nanos or 0
        if usd_nanos is None and estimate and layout.spends:
            if layout.money_scope is not None and not self._serve_unpriced and self._prices.lookup(ex.model) is None:
                raise _unbounded(ex.model, layout.money_scope)
            prompt, output = self._prompt_tokens(ex), self._max_output(ex)
            tokens, usd = prompt + output, self._prices.estimate_nanos(ex.model, prompt, output) or 0
        charges = tuple(Charge(name, usd if metric == "usd" else tokens if metric == "tokens" else 1, limit,
                               math.ceil(expires - now)) for name, metric, limit, expires in layout.counters)
        return Reservation(layout.rules, layout.slots, charges, layout.metrics, layout.ends, now)

    def _layout(self, rules: list[Rule], now: float) -> _Layout:
        key = tuple(map(id, rules))
        layout = self._layouts.get(key)
        if layout is not None and layout.start <= now < layout.end:
            self._layouts.move_to_end(key)
            return layout
        slot_of: dict[str, int] = {}
        counters: list[list] = []
        slots, ends, start, end = [], [], -math.inf, math.inf
        for rule in rules:
            window_id, window_start, window_end = self.window(rule.window, now)
            start, end = max(start, window_start), min(end, window_end)
            name = f"{rule.metric}:{rule.window}:{window_id}:{rule.scope}"
            slot = slot_of.get(name)
            if slot is None:
                slot = slot_of[name] = len(counters)
                # A counter outlives its window by the longest hold, and a minute for clocks that disagree.
                counters.append([name, rule.metric, None, window_end + self._hold_seconds + 60])
                ends.append(window_end)
            if rule.enforced:  # two rules on one counter: the tighter limit holds
                limit = counters[slot][2]
                counters[slot][2] = rule.limit if limit is None else min(limit, rule.limit)
            slots.append(slot)
        money = next((rule.scope for rule in rules if rule.metric == "usd"), None)
        layout = self._layouts[key] = _Layout(
            tuple(rules), tuple(slots), tuple(map(tuple, counters)), tuple(counter[1] for counter in counters),
            tuple(ends), money, any(rule.metric != "requests" for rule in rules), start, end)
        _bound(self._layouts)
        return layout

    def _key_rule(self, key_id: str, nanos: int) -> Rule:
        """A key's own daily usd budget: one Rule per key and amount, so that its rule set keeps its layout."""
        rule = self._key_rules.get((key_id, nanos))
        if rule is None:
            rule = self._key_rules[key_id, nanos] = Rule(f"key:{key_id}", "key", key_id, "usd", "day", nanos,
                                                         labelled=False)
            _bound(self._key_rules)
        return rule

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


def _bound(cache: OrderedDict) -> None:
    if len(cache) > _KEPT_LAYOUTS:
        cache.popitem(last=False)


def _unbounded(model: str, scope: str) -> BadRequest:
    """A usd budget cannot bound what has no price: serving it would spend past the budget unseen."""
    return BadRequest(f"The model '{model}' has no price, so the usd budget of {scope} cannot bound it. The operator "
                      "can price it in pricing.overrides (0 for a model that costs nothing), or serve unpriced models "
                      "anyway with pricing.unpriced: serve.", param="model", code="model_not_priced")


def answered(ex: Exchange) -> bool:
    """Something was used: tokens, money, or a success (what failed before any answer is released)."""
    return bool(ex.usage is not None and ex.usage.total_tokens or ex.cost_nanos or 0 < ex.status < 400)


def actual(ex: Exchange, plan: Reservation, was_answered: bool | None = None) -> list[int]:
    """Per counter of the plan: what the request really used (`was_answered`: answered(ex), when known)."""
    usage = ex.usage
    tokens = usage.prompt_tokens + usage.completion_tokens if usage is not None else 0
    usd = ex.cost_nanos or 0
    if was_answered is None:
        was_answered = answered(ex)
    # A billed failed attempt (parent_id: its request's) is settled beside its request, which counts itself.
    requests = int(was_answered and ex.parent_id is None)
    return [usd if metric == "usd" else tokens if metric == "tokens" else requests for metric in plan.metrics]
