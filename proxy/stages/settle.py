"""The settle stage: an answer's usage and cost, once: the upstream's usage, else a local count."""

from typing import Any

import orjson

from proxy.stages import count
from proxy.exchange import Exchange
from proxy.accounting.pricing import PriceTable
from proxy.accounting.tokens import TokenCounter
from proxy.accounting.usage import Usage


def read_answer(ex: Exchange, body: bytes) -> Any:
    """Parse a whole (non-streamed) 2xx answer for its usage; returns the parsed answer or None."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # relayed as it came; counted locally when settled
    ex.answer = answer
    ex.usage = ex.dialect.usage_of_answer(answer)
    if ex.usage is None:
        ex.output_text.append(ex.dialect.answer_text(answer))
    return answer


class Settler:
    def __init__(self, tokens: TokenCounter, prices: PriceTable) -> None:
        self._tokens = tokens
        self._prices = prices

    def settle(self, ex: Exchange) -> None:
        if ex.settled or ex.endpoint == "passthrough" or not ex.model:
            return
        ex.settled = True
        if ex.usage is None:
            answered = 0 < ex.status < 400
            ex.usage = (
                count.estimate_usage(self._tokens.for_model(ex.model), ex.dialect, ex.body, ex.output_text,
                                     ex.partial_usage)
                if answered or ex.output_text else Usage()
            )
        # Nothing used costs nothing, priced or not; an unpriced model that did work stays None.
        answer = self._prices.cost_nanos(ex.model, ex.usage) if ex.usage.total_tokens else 0
        ex.cost_nanos = None if answer is None else answer + ex.side_cost_nanos
