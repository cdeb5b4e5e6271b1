"""One model's price (Decimal USD per 1M tokens) and the arithmetic on it: a request's cost, the most a
request can cost, and the Batch API's rates.

Usage arrives normalised to OpenAI's semantics (proxy.accounting.usage), so one formula prices every provider.
"""

import dataclasses
from dataclasses import dataclass
from decimal import Decimal

from proxy.accounting.usage import Usage

PRICE_FIELDS = (
    "input", "output", "cached_input", "cache_write", "cache_write_1h", "reasoning", "batch_input", "batch_output"
)
_ZERO = Decimal(0)
# Batch APIs bill half the synchronous price: the rate for a model without batch_input/batch_output of its own.
# OpenAI: "a 50% cost discount compared to synchronous APIs" (https://platform.openai.com/docs/guides/batch);
# Anthropic: batches "at 50% of standard API prices" (https://docs.anthropic.com/en/docs/build-with-claude/batch-processing).
BATCH_DISCOUNT_BY_PROVIDER = {"openai": Decimal("0.5"), "anthropic": Decimal("0.5")}


@dataclass(frozen=True, slots=True)
class Price:
    """Decimal USD per 1M tokens; None means "billed like the main rate" (input or output)."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None
    cache_write: Decimal | None  # a 5-minute write (Anthropic's default TTL)
    cache_write_1h: Decimal | None  # a 1-hour write; None: billed like cache_write
    reasoning: Decimal | None
    batch_input: Decimal | None
    batch_output: Decimal | None
    provider: str
    source: str
    as_of: str


def cost_per_million(price: Price, usage: Usage) -> Decimal:
    """What `usage` cost, in USD times a million (in nano-dollars, an int, for a price from nanos_per_token)."""
    # Clamp the subsets to their totals so an upstream's inconsistent counts can never make a part negative.
    cached = min(usage.cached_prompt_tokens, usage.prompt_tokens)
    written = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
    written_1h = min(usage.cache_write_1h_tokens, written)
    reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
    write_rate = _or_main(price.cache_write, price.input)
    return (
        (usage.prompt_tokens - cached - written) * price.input
        + cached * _or_main(price.cached_input, price.input)
        + (written - written_1h) * write_rate
        + written_1h * _or_main(price.cache_write_1h, write_rate)
        + (usage.completion_tokens - reasoning) * price.output
        + reasoning * _or_main(price.reasoning, price.output)
    )


def batch_price(price: Price) -> Price | None:
    """Batch rates: the entry's batch_input and batch_output, else its provider's batch discount; the cache and
    reasoning rates take the same discount as the main rate of their side (Anthropic: batch and prompt-caching
    discounts stack; OpenAI bills cached input in a batch at the discounted cached rate)."""
    if price.batch_input is not None and price.batch_output is not None:
        batch_input, batch_output = price.batch_input, price.batch_output
    elif (discount := BATCH_DISCOUNT_BY_PROVIDER.get(price.provider)) is not None:
        batch_input, batch_output = price.input * discount, price.output * discount
    else:
        return None
    input_scale = batch_input / price.input if price.input else Decimal(1)
    output_scale = batch_output / price.output if price.output else Decimal(1)
    scaled = {field.name: None if getattr(price, field.name) is None else getattr(price, field.name) * scale
              for field in dataclasses.fields(price)
              for scale in [input_scale if field.name.startswith("cache") else output_scale]
              if field.name.startswith("cache") or field.name == "reasoning"}
    return dataclasses.replace(price, input=batch_input, output=batch_output, **scaled)


def ceiling_per_million(price: Price, prompt_tokens: int, max_output_tokens: int) -> Decimal:
    """The most a request of this size can cost, whatever part of it is cached or reasoning, in USD times a million
    (in nano-dollars for a price from nanos_per_token)."""
    prompt_rate, output_rate = ceiling_rates(price)
    return prompt_tokens * prompt_rate + max_output_tokens * output_rate


def ceiling_rates(price: Price) -> tuple[Decimal, Decimal]:
    """The dearest rate a prompt token and an output token can be billed at."""
    # A cache write can cost more than plain input (Anthropic: 1.25x, 2x for an hour): the dearest prompt rate.
    prompt_rates = (price.input, price.cached_input, price.cache_write, price.cache_write_1h)
    return max(rate for rate in prompt_rates if rate is not None), max(price.output, price.reasoning or _ZERO)


def _or_main(rate: Decimal | None, main_rate: Decimal) -> Decimal:
    # `is None`, not `or`: a zero rate (free cache reads) is a price, not a missing one.
    return main_rate if rate is None else rate



_RATES = ("input", "output", "cached_input", "cache_write", "cache_write_1h", "reasoning")  # what a request's cost uses
_NANOS_PER_USD_PER_MILLION = 1000  # $1 per million tokens is 1,000 nano-dollars per token


def nanos_per_token(price: Price) -> Price | None:
    """The price with each rate in whole nano-dollars per token (an int), when every rate is one (most are: $0.15 per
    million tokens is 150): the cost formulas then give nano-dollars in integer arithmetic, exactly what the Decimal
    ones round to. None when a rate has a fraction of a nano-dollar."""
    scaled = {name: getattr(price, name) for name in _RATES}
    for name, rate in scaled.items():
        if rate is not None:
            rate *= _NANOS_PER_USD_PER_MILLION
            if rate != rate.to_integral_value():
                return None
            scaled[name] = int(rate)
    return dataclasses.replace(price, **scaled)
