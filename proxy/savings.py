"""Savings that cannot be computed per request (concise, cap) are estimated from held-out traffic.

For each policy the proxy keeps the running mean cost of treated and held-out requests; a treated
request is credited with the difference of the means once both have enough samples. Summed over
treated requests this is N_treated x (mean held-out - mean treated): the measured effect, never the
hoped-for one. `thriftgate savings` recomputes the same from the ledger with a confidence interval.
"""

from dataclasses import dataclass

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
        treated_arm, held_arm = self._arms.setdefault(policy, (_Arm(), _Arm()))
        (treated_arm if treated else held_arm).add(cost_nanos)
        if not treated or min(treated_arm.count, held_arm.count) < MIN_SAMPLES:
            return 0
        return max(round(held_arm.mean - treated_arm.mean), 0)
