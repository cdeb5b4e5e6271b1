"""`thriftgate whatif`: recorded traffic repriced offline under another model, price table or policy set.

Per request, the what-if cost starts from the tokens the request really used and the model that answered:
1. candidate policies, in chain order (proxy/analysis/candidates.py): a route moves the request to its
   model, a deny makes it cost nothing, concise/cap/cascade multiply its cost by their measured effect;
2. the model map (`--model a=b`) then names the model whose prices apply;
3. the price table (`--prices`, else the one in use) prices the same tokens with the proxy's own code
   (PriceTable.cost_nanos: cached input, cache writes and reasoning at their own rates; batch lines at the
   batch rate), plus what the request paid beside its answer (a lookup's embedding).
Where only prices change, the result is exact to the nano-dollar; a holdout fraction or a measured effect
makes it an expectation, and the basis of every figure says which. A request whose what-if cannot be
estimated keeps its actual cost in the what-if column and is counted as not estimable.
"""

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import orjson

from proxy.accounting.pricing import PriceTable, name_variants
from proxy.accounting.usage import Usage
from proxy.analysis.candidates import MEASURED_TYPES, effects, measure, priced_models
from proxy.analysis.records import group_names, is_batch_line, is_request, usage_of
from proxy.policies.base import PolicyConfig

GROUPINGS = ("model", "team", "tag", "policy", "endpoint", "requested_model", "key", "user", "language")


class WhatIfError(ValueError):
    """A scenario that cannot be priced; names the model or input at fault. No partial table is made."""


@dataclass(frozen=True, slots=True)
class Scenario:
    model_map: Mapping[str, str] = field(default_factory=dict)  # answering model -> model whose prices apply
    prices: PriceTable | None = None  # None: the table in use
    prices_name: str = ""  # where `prices` came from, for messages
    policies: tuple[PolicyConfig, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.model_map and self.prices is None and not self.policies


@dataclass(slots=True)
class _Tally:
    requests: int = 0
    affected: int = 0
    unpriced: int = 0
    not_estimable: int = 0
    not_estimable_nanos: int = 0
    actual_nanos: int = 0
    whatif_nanos: int = 0
    affected_actual_nanos: int = 0
    bases: Counter = field(default_factory=Counter)

    def add(self, outcome: "_Outcome", actual: int | None, request: bool) -> None:
        """One row: a request, or one of its failed attempts (`request` False: dollars, not counted)."""
        counted = int(request)
        self.requests += counted
        if actual is None:
            self.unpriced += counted
            return
        self.actual_nanos += actual
        self.whatif_nanos += outcome.whatif
        if outcome.affected:
            self.affected += counted
            self.affected_actual_nanos += actual
        if outcome.not_estimable:
            self.not_estimable += counted
            self.not_estimable_nanos += actual
        self.bases.update(outcome.bases)

    def summary(self, name: str) -> dict:
        return {
            "group": name, "requests": self.requests, "affected_requests": self.affected,
            "affected_share": self.affected / self.requests if self.requests else 0.0,
            "affected_cost_share": self.affected_actual_nanos / self.actual_nanos if self.actual_nanos else 0.0,
            "actual_nanos": self.actual_nanos, "whatif_nanos": self.whatif_nanos,
            "difference_nanos": self.whatif_nanos - self.actual_nanos,
            "not_estimable_requests": self.not_estimable, "not_estimable_actual_nanos": self.not_estimable_nanos,
            "unpriced_requests": self.unpriced, "bases": dict(self.bases.most_common()),
        }


@dataclass(slots=True)
class _Outcome:
    whatif: int = 0
    affected: bool = False
    not_estimable: bool = False
    bases: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)


def check(scenario: Scenario, current: PriceTable) -> None:
    """Every model the scenario names must have a price, in the table it will be priced with."""
    table = scenario.prices or current
    where = f"the prices file {scenario.prices_name}" if scenario.prices is not None else "the price table in use"
    for source, target in scenario.model_map.items():
        if current.lookup(source) is None and table.lookup(source) is None:
            raise WhatIfError(f"--model {source}={target}: unknown model '{source}' (no price for it in {where})")
        if table.lookup(target) is None:
            raise WhatIfError(f"--model {source}={target}: unknown model '{target}' (no price for it in {where})")
    for model in sorted(priced_models(scenario.policies)):
        if table.lookup(mapped_model(scenario, model)) is None:
            raise WhatIfError(f"--policies: a route sends work to '{model}', which has no price in {where}")


def whatif(rows: Callable[[], Iterable[dict]], scenario: Scenario, current: PriceTable, *, by: str,
           since: float, until: float) -> dict:
    """The report: per group and in all, actual against what-if. `rows` gives the window's rows (it is
    called twice when candidate policies need their measured effects from the ledger)."""
    if by not in GROUPINGS:
        raise WhatIfError(f"cannot group by {by!r}; use one of: {', '.join(GROUPINGS)}")
    check(scenario, current)
    measured_names = {p.name for p in scenario.policies if p.type in MEASURED_TYPES}
    measured = measure(rows(), measured_names, since, until) if measured_names else {}
    table = scenario.prices or current
    groups: dict[str, _Tally] = {}
    total = _Tally()
    missing: set[str] = set()
    for row in rows():
        outcome = _reprice(row, scenario, table, measured, missing)
        actual, request = row["cost_nanos"], is_request(row)
        total.add(outcome, actual, request)
        for name in _groups_of(row, by, outcome, scenario):
            groups.setdefault(name, _Tally()).add(outcome, actual, request)
    if missing:
        raise WhatIfError(f"no price for {', '.join(sorted(missing))} in "
                          f"{'the prices file ' + scenario.prices_name if scenario.prices else 'the price table in use'}"
                          f"{', which the recorded traffic uses' if scenario.prices else ''}")
    ordered = sorted(groups.items(), key=lambda kv: (-kv[1].actual_nanos, kv[0]))
    return {
        "since": since, "until": until, "by": by, "scenario": describe(scenario),
        "groups": [tally.summary(name) for name, tally in ordered], "total": total.summary("TOTAL"),
        "measured": {name: {"ratio": m.ratio, "basis": m.basis} for name, m in measured.items()},
    }


def _reprice(row: dict, scenario: Scenario, table: PriceTable, measured: dict, missing: set[str]) -> _Outcome:
    outcome = _Outcome()
    actual = row["cost_nanos"]
    if actual is None:
        return outcome
    applied = effects(scenario.policies, row, measured) if scenario.policies else []
    if applied and applied[-1].kind == "unknown":
        outcome.whatif, outcome.not_estimable, outcome.affected = actual, True, True
        outcome.bases.append(applied[-1].basis)
        outcome.policies.append(applied[-1].policy)
        return outcome
    model = row["model"]
    mapped = mapped_model(scenario, model)
    if not applied and mapped == model and scenario.prices is None:
        outcome.whatif = actual  # nothing in the scenario touches it: what was paid stands, to the nano-dollar
        return outcome
    usage = usage_of(row)
    side = _side_nanos(row)

    def price(name: str) -> Decimal:
        name = mapped_model(scenario, name)
        cost = _cost(table, name, usage, batch=is_batch_line(row))
        if cost is None:
            missing.add(name)
            return Decimal(0)
        return Decimal(cost + side)

    # Paid is paid: the recorded cost stands unless the model or the price table changes.
    cost = Decimal(actual) if mapped == model and scenario.prices is None else price(model)
    factor = Decimal(1)
    for effect in applied:
        held = Decimal(repr(effect.holdout))
        if effect.kind == "route":
            cost = held * cost + (1 - held) * price(effect.model) * factor
        else:
            step = held + (1 - held) * (Decimal(0) if effect.kind == "deny" else Decimal(repr(effect.ratio)))
            cost, factor = cost * step, factor * step
        outcome.bases.append(effect.basis + (f" (holdout {effect.holdout:g}: expected value)" if effect.holdout else ""))
        outcome.policies.append(effect.policy)
    if mapped != model:
        outcome.bases.append(f"exact: the same tokens at {mapped}'s price")
    if scenario.prices is not None:
        outcome.bases.append(f"exact: repriced with {scenario.prices_name}")
    outcome.whatif = int(cost.to_integral_value())
    outcome.affected = bool(applied) or mapped != model or outcome.whatif != actual
    return outcome


def mapped_model(scenario: Scenario, model: str) -> str:
    """The model whose prices apply: `--model gpt-4o=...` also maps openai/gpt-4o and gpt-4o-2024-08-06."""
    for name in name_variants(model):
        if name in scenario.model_map:
            return scenario.model_map[name]
    return model


def _cost(table: PriceTable, model: str, usage: Usage, *, batch: bool) -> int | None:
    if batch:
        cost = table.batch_cost_nanos(model, usage)
        if cost is not None:
            return cost
    return table.cost_nanos(model, usage)


def _side_nanos(row: dict) -> int:
    """What the request paid beside its answer: a lookup's embedding call."""
    if not row.get("lookups"):
        return 0
    return sum(entry.get("embedding_cost_nanos", 0) for entry in orjson.loads(row["lookups"]).values())


def _groups_of(row: dict, by: str, outcome: _Outcome, scenario: Scenario) -> Iterable[str]:
    if by == "policy":
        if outcome.policies:
            return dict.fromkeys(outcome.policies)
        if outcome.affected:
            return ("(model map)",) if mapped_model(scenario, row["model"]) != row["model"] else ("(prices)",)
        return ("(unaffected)",)
    return group_names(row, by)


def describe(scenario: Scenario) -> dict:
    return {"model_map": dict(scenario.model_map), "prices": scenario.prices_name or None,
            "policies": [p.name for p in scenario.policies]}
