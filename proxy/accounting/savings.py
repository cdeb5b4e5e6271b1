"""Savings that cannot be computed per request (concise, cap) are estimated from held-out traffic.

For each policy the proxy keeps the running mean cost of treated and held-out requests; a treated
request is credited with the difference of the means once both have enough samples. Summed over
treated requests this is N_treated x (mean held-out - mean treated): the measured effect, never the
hoped-for one. `thriftgate savings` recomputes the same from the ledger with a confidence interval.
"""

from dataclasses import dataclass

import orjson

MIN_SAMPLES = 20  # per arm, before any estimate is credited


@dataclass(slots=True)
class _Arm:
    count: int = 0
    total_nanos: int = 0

    def add(self, nanos: int) -> None:
        self.count += 1
        self.total_nanos += nanos

    @property
    def mean(self) -> float:
        return self.total_nanos / self.count


class HoldoutStats:
    def __init__(self) -> None:
        self._arms: dict[str, tuple[_Arm, _Arm]] = {}

    def observe(self, policy: str, *, treated: bool, cost_nanos: int) -> int:
        """Record one request; return the saving to credit it with (0 until there is evidence)."""
        arms = self._arms.get(policy)
        if arms is None:  # not setdefault: its default would be made on every call
            arms = self._arms[policy] = (_Arm(), _Arm())
        treated_arm, held_arm = arms
        (treated_arm if treated else held_arm).add(cost_nanos)
        if not treated or min(treated_arm.count, held_arm.count) < MIN_SAMPLES:
            return 0
        return max(round(held_arm.mean - treated_arm.mean), 0)


# ---- The report: `thriftgate savings` and GET /admin/savings ----

Z_95 = 1.959964  # two-sided 95% normal quantile
SECONDS_PER_MONTH = 30 * 86400


@dataclass(slots=True)
class _Sample:
    count: int = 0
    tokens: int = 0
    cost: int = 0
    cost_squares: int = 0

    def add(self, tokens: int, cost: int) -> None:
        self.count += 1
        self.tokens += tokens
        self.cost += cost
        self.cost_squares += cost * cost

    def mean_cost(self) -> float | None:
        return self.cost / self.count if self.count else None

    def mean_tokens(self) -> float | None:
        return self.tokens / self.count if self.count else None

    def variance(self) -> float:
        if self.count < 2:
            return 0.0
        mean = self.cost / self.count
        return max(self.cost_squares / self.count - mean * mean, 0.0) * self.count / (self.count - 1)


@dataclass(slots=True)
class _PolicyTally:
    treated: _Sample
    held_out: _Sample
    counterfactual_nanos: int = 0  # exact savings (route, cascade) on the tokens actually used
    shadow_nanos: int = 0  # what shadow-mode routing would have saved
    mechanism: str | None = None


def savings_report(rows: list[dict], *, since: float, until: float) -> list[dict]:
    """Per policy: treated vs held-out means, their difference with a 95% interval, and projections."""
    tallies: dict[str, _PolicyTally] = {}
    for row in rows:
        for name, entry in orjson.loads(row["policies"]).items():
            tally = tallies.setdefault(name, _PolicyTally(_Sample(), _Sample()))
            _tally_row(tally, entry, row)
    months = max(until - since, 1.0) / SECONDS_PER_MONTH
    return [_summary(name, tally, months) for name, tally in sorted(tallies.items())]


def _tally_row(tally: _PolicyTally, entry: dict, row: dict) -> None:
    mark = entry.get("mark", "")
    if row["cost_nanos"] is not None and mark in ("treated", "held_out"):
        sample = tally.treated if mark == "treated" else tally.held_out
        sample.add(row["completion_tokens"], row["cost_nanos"])
    if "saved_nanos" in entry:
        tally.mechanism = entry.get("mechanism")
        if entry.get("basis") == "counterfactual":
            tally.counterfactual_nanos += entry["saved_nanos"]
        elif entry.get("basis") == "shadow":
            tally.shadow_nanos += entry["saved_nanos"]


def _summary(name: str, tally: _PolicyTally, months: float) -> dict:
    treated, held = tally.treated, tally.held_out
    summary = {
        "policy": name, "mechanism": tally.mechanism,
        "treated_requests": treated.count, "held_out_requests": held.count,
        "treated_mean_completion_tokens": treated.mean_tokens(), "held_out_mean_completion_tokens": held.mean_tokens(),
        "treated_mean_cost_nanos": treated.mean_cost(), "held_out_mean_cost_nanos": held.mean_cost(),
        "saving_per_request_nanos": None, "saving_ci95_nanos": None,
        "counterfactual_saved_nanos": tally.counterfactual_nanos, "shadow_would_save_nanos": tally.shadow_nanos,
        "projected_monthly_saving_nanos": round(tally.counterfactual_nanos / months),
    }
    if treated.count >= 2 and held.count >= 2:
        diff = held.mean_cost() - treated.mean_cost()
        half_width = Z_95 * (treated.variance() / treated.count + held.variance() / held.count) ** 0.5
        summary["saving_per_request_nanos"] = diff
        summary["saving_ci95_nanos"] = (diff - half_width, diff + half_width)
        if not tally.counterfactual_nanos:
            summary["projected_monthly_saving_nanos"] = round(diff * treated.count / months)
    return summary
