"""Fallbacks a request may use, and what a fallback saved or cost.

A request may narrow its model's configured chain with the x-thriftgate-fallbacks header: `none`, or the
models it accepts. It never adds to the chain: a fallback goes only where the operator allowed it, so the
header cannot walk around a rule that keeps a team off a model. A name no upstream serves is a 400.
"""

from collections.abc import Callable

from proxy.accounting.pricing import PriceTable
from proxy.errors import BadRequest
from proxy.exchange import Exchange, Saving

FALLBACKS_HEADER = "x-thriftgate-fallbacks"
MAX_NAMED = 16
MECHANISM = "fallback"


def allowed_fallbacks(ex: Exchange, route: Callable[[str], object | None]) -> frozenset[str] | None:
    """The models this request accepts as fallbacks; None: every configured one."""
    value = ex.request.headers.get(FALLBACKS_HEADER)
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names or [name.lower() for name in names] == ["none"]:
        return frozenset()
    if len(names) > MAX_NAMED:
        raise BadRequest(f"The {FALLBACKS_HEADER} header names more than {MAX_NAMED} models.",
                         param=FALLBACKS_HEADER, code="invalid_header")
    unknown = [name for name in names if route(name) is None]
    if unknown:
        raise BadRequest(
            f"The {FALLBACKS_HEADER} header names models no upstream serves: {', '.join(unknown)}. Give 'none', or "
            "the models of the configured fallbacks this request may use.", param=FALLBACKS_HEADER,
            code="invalid_header")
    return frozenset(names)


def fallback_saving(ex: Exchange, prices: PriceTable) -> Saving | None:
    """The model that failed, priced on the tokens its fallback used, minus what the fallback cost: positive
    for a cheaper model, negative for a dearer one. None when either is unpriced or nothing was used."""
    if ex.fallback_from is None or ex.usage is None or ex.cost_nanos is None:
        return None
    would_have_cost = prices.cost_nanos(ex.fallback_from, ex.usage)
    if would_have_cost is None:
        return None
    ex.policy_marks.setdefault(MECHANISM, MECHANISM)  # so the ledger's policies column carries the saving
    saving = Saving(MECHANISM, MECHANISM, would_have_cost - (ex.cost_nanos - ex.side_cost_nanos))
    ex.savings.append(saving)
    return saving
