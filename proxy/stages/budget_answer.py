"""What a client is told about its budgets: the refusal (429) and the remaining-budget and
OpenAI-style rate-limit headers of an answer."""

import math
import time

from proxy.errors import RateLimited
from proxy.accounting.money import format_usd
from proxy.stages.budget_plan import Reservation
from proxy.stages.budget_rules import Rule


def refusal(plan: Reservation, now: float) -> tuple[RateLimited, str]:
    """The 429 for a plan the store refused, and the kind of the scope that refused it (for the metric)."""
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
        message += " This request alone is larger than the whole limit: lower its max_tokens, its n or its prompt."
    headers = {"Retry-After": str(wait), **answer_headers(plan, [0] * len(plan.charges), now)}
    return RateLimited(message, code=code, headers=headers), rule.kind


def answer_headers(plan: Reservation, used: list[int], now: float) -> dict[str, str]:
    """Remaining budget (tightest usd scope) and the tightest tokens and requests limits, after `used`."""
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


def _duration(seconds: float) -> str:
    """OpenAI's style for x-ratelimit-reset-*: 20ms, 1s, 6m0s, 1h2m3s."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 0)}ms"
    minutes, secs = divmod(math.ceil(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s" if minutes else f"{secs}s"
