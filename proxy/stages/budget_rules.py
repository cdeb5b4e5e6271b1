"""Budget rules: what each configured budget counts (usd, tokens, requests), for whom, and over which
calendar window; built once from the config."""

import calendar
import fnmatch
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.accounting.money import usd_to_nanos
from proxy.control.config import BudgetConfig
from proxy.exchange import Exchange

_SPANS = {"minute": 60, "hour": 3600, "day": 86400}
_EXCHANGE_FIELD = {"team": "team", "key": "key_id", "user": "user"}  # a scope kind's value on the exchange
_ID_FORMATS = {"minute": "%Y%m%d%H%M", "hour": "%Y%m%d%H", "day": "%Y%m%d"}


@dataclass(frozen=True, slots=True)
class Rule:
    scope: str  # as configured: team:support, model:gpt-4*, global
    kind: str
    value: str
    metric: str  # usd (nano-dollars) | tokens | requests
    window: str  # minute | hour | day | month
    limit: int
    enforced: bool = True  # False (on_exhausted: downgrade): counted, never refused
    soft_at: int | None = None  # level past which requests go to downgrade_to
    downgrade_to: str | None = None
    labelled: bool = True  # a configured scope: bounded, so worth a metric label
    model_pattern: re.Pattern | None = None
    alerts: tuple[float, ...] = ()  # usd: shares of the limit to send an alert at, ascending

    def applies(self, ex: Exchange) -> bool:
        if self.kind == "global":
            return True
        if self.kind == "model":
            return self.model_pattern.match(ex.model) is not None
        return getattr(ex, _EXCHANGE_FIELD[self.kind]) == self.value


def rules_from_config(budgets: Iterable[BudgetConfig]) -> tuple[Rule, ...]:
    rules = []
    for b in budgets:
        common = {"scope": b.scope, "kind": b.kind, "value": b.value,
                  "model_pattern": re.compile(fnmatch.translate(b.value)) if b.kind == "model" else None}
        if b.usd is not None:
            limit = usd_to_nanos(b.usd)
            rules.append(Rule(metric="usd", window=b.window, limit=limit, enforced=b.on_exhausted == "reject",
                              soft_at=None if b.soft_limit is None else int(limit * b.soft_limit),
                              downgrade_to=b.downgrade_to, alerts=tuple(sorted(a.at for a in b.alerts)), **common))
        if b.tokens_per_minute is not None:
            rules.append(Rule(metric="tokens", window="minute", limit=b.tokens_per_minute, **common))
        if b.requests_per_minute is not None:
            rules.append(Rule(metric="requests", window="minute", limit=b.requests_per_minute, **common))
    return tuple(rules)


def window_of(window: str, now: float) -> tuple[str, float, float]:
    """The calendar window (UTC) holding `now`: its id, start and end."""
    if window == "month":
        t = time.gmtime(now)
        start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
        end = calendar.timegm((t.tm_year + t.tm_mon // 12, t.tm_mon % 12 + 1, 1, 0, 0, 0))
        return f"{t.tm_year:04d}{t.tm_mon:02d}", float(start), float(end)
    span = _SPANS[window]
    start = now // span * span
    return time.strftime(_ID_FORMATS[window], time.gmtime(start)), start, start + span
