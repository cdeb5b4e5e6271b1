"""Model prices and the cost of one request, in exact decimal arithmetic.

Prices are Decimal USD per 1M tokens. They come from YAML price tables shaped like
config/pricing.yaml (`models: {name: {provider, input, output, ...}}`) and from the config's
overrides. Later files win over earlier ones and overrides win over every file. An entry replaces
the earlier entry of its name whole, so a stale cached_input never mixes with a new input price.
A name holding *, ? or [ is a glob pattern ("llama-*") matched against the names below.

How `lookup` resolves the model name a client sent; the first name with a price wins:
1. the name itself;
2. the name without its provider/ prefix: "openai/gpt-4o" -> "gpt-4o";
3. a fine-tuned id "ft:<base>:<org>:<suffix>:<id>" (the suffix may be empty) -> "ft:<base>", then
   "ft:<base without its date>", then the newest dated "ft:<base>-<date>" in the table. Never the
   base model's own price: fine-tuned models cost 2-6x their base, so such an id stays unpriced;
4. a dated snapshot that has no entry of its own -> its undated name: "gpt-4o-2024-08-06" ->
   "gpt-4o", "claude-3-5-sonnet-20241022" -> "claude-3-5-sonnet", "gpt-4-0613" -> "gpt-4".
For each name tried, a pattern from a later source (an override "gpt-4o*") wins over an exact entry
from an earlier one; otherwise the exact entry wins. Among one source's patterns the first listed wins.

Usage arrives normalised to OpenAI's semantics (proxy.accounting.usage), so one formula prices every provider.
"""

import dataclasses
import fnmatch
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from proxy.accounting.money import usd_to_nanos
from proxy.accounting.usage import Usage

PRICE_FIELDS = (
    "input", "output", "cached_input", "cache_write", "cache_write_1h", "reasoning", "batch_input", "batch_output"
)
ENTRY_FIELDS = ("provider", *PRICE_FIELDS, "source", "as_of")  # also the order pricing_import writes them in
_REQUIRED_PRICES = frozenset({"input", "output"})
_PRICE_EXPECTED = "a non-negative number of USD per 1M tokens"

# Client-chosen names must not grow memory without bound; clearing lets the real names return at once.
_LOOKUP_CACHE_LIMIT = 4096
# OpenAI's -2024-08-06 and -0613, Anthropic's -20241022, Mistral's -2411.
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")
_GLOB_CHARS = frozenset("*?[")
_ZERO = Decimal(0)
# Batch APIs bill half the synchronous price: the rate for a model without batch_input/batch_output of its own.
# OpenAI: "a 50% cost discount compared to synchronous APIs" (https://platform.openai.com/docs/guides/batch);
# Anthropic: batches "at 50% of standard API prices" (https://docs.anthropic.com/en/docs/build-with-claude/batch-processing).
BATCH_DISCOUNT_BY_PROVIDER = {"openai": Decimal("0.5"), "anthropic": Decimal("0.5")}
# libyaml reads the shipped table several times faster than the pure-Python parser.
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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


class PricingError(ValueError):
    """A bad price table or override; str() names the file, the dotted key and what was expected."""


class PriceTable:
    __slots__ = ("_exact", "_patterns", "_ft_snapshots", "_models", "_resolved")

    def __init__(self, sources: Iterable[Mapping[str, Price]]):
        """Sources in rising precedence: each later one wins over those before it."""
        self._exact: dict[str, tuple[int, Price]] = {}
        patterns: list[tuple[int, re.Pattern[str], Price]] = []
        for rank, source in enumerate(sources):
            for name, price in source.items():
                if _GLOB_CHARS.isdisjoint(name):
                    self._exact[name] = (rank, price)
                else:
                    patterns.append((rank, re.compile(fnmatch.translate(name)), price))
        # Latest source first; the sort is stable, so one source's patterns keep their listed order.
        self._patterns = sorted(patterns, key=lambda pattern: -pattern[0])
        self._models = frozenset(self._exact)
        self._ft_snapshots = _dated_fine_tuned_names(self._models)
        self._resolved: dict[str, Price | None] = {}

    @classmethod
    def load(
        cls, files: list[Path], overrides: Mapping[str, Any], *, overrides_origin: str = "pricing overrides"
    ) -> "PriceTable":
        """Read the price files, then the overrides; overrides_origin names them in error messages."""
        sources = [_read_price_file(Path(path)) for path in files]
        if not isinstance(overrides, Mapping):
            raise _error(overrides_origin, "(top level)", "a mapping of model name to prices", repr(overrides))
        sources.append(_parse_entries(overrides, overrides_origin, key_prefix=""))
        return cls(sources)

    @property
    def models(self) -> frozenset[str]:
        """The exact model names in the table (patterns excluded)."""
        return self._models

    def lookup(self, model: str) -> Price | None:
        try:
            return self._resolved[model]
        except KeyError:
            pass
        price = self._resolve(model)
        if len(self._resolved) >= _LOOKUP_CACHE_LIMIT:
            self._resolved.clear()
        self._resolved[model] = price
        return price

    def cost_nanos(self, model: str, usage: Usage) -> int | None:
        """What the request cost, in nano-dollars; None when the model is unpriced."""
        price = self.lookup(model)
        return None if price is None else usd_to_nanos(_cost_per_million(price, usage).scaleb(-6))

    def batch_cost_nanos(self, model: str, usage: Usage) -> int | None:
        """What the request costs through the provider's Batch API; None when no batch rate is known."""
        price = self.lookup(model)
        batch = None if price is None else batch_price(price)
        return None if batch is None else usd_to_nanos(_cost_per_million(batch, usage).scaleb(-6))

    def estimate_nanos(self, model: str, prompt_tokens: int, max_output_tokens: int, *,
                       batch: bool = False) -> int | None:
        """The most the request can cost, whatever part of it the provider caches or spends reasoning
        (batch: through a Batch API, at its batch rate when one is known)."""
        price = self.lookup(model)
        if price is None:
            return None
        if batch:
            price = batch_price(price) or price
        return usd_to_nanos(_ceiling_per_million(price, prompt_tokens, max_output_tokens).scaleb(-6))

    def _resolve(self, model: str) -> Price | None:
        bare = model.rpartition("/")[2]
        fallbacks = self._fine_tuned_names(bare) if bare.startswith("ft:") else (_undated(bare),)
        for name in (model, bare, *fallbacks):
            price = self._find(name)
            if price is not None:
                return price
        return None

    def _fine_tuned_names(self, ft_id: str) -> tuple[str, ...]:
        base = ft_id.removeprefix("ft:").split(":", 1)[0]
        undated = f"ft:{_undated(base)}"
        return (f"ft:{base}", undated, *reversed(self._ft_snapshots.get(undated, ())))

    def _find(self, name: str) -> Price | None:
        exact_rank, price = self._exact.get(name, (-1, None))
        for rank, pattern, pattern_price in self._patterns:
            if rank <= exact_rank:
                break
            if pattern.match(name):
                return pattern_price
        return price


def name_variants(model: str) -> tuple[str, ...]:
    """The names a model goes by, most specific first: itself, without its provider/ prefix, undated."""
    bare = model.rpartition("/")[2]
    return tuple(dict.fromkeys((model, bare, _undated(bare))))


def default_pricing_path() -> Path:
    """The shipped table: proxy/defaults/pricing.yaml, a link to config/pricing.yaml in a checkout."""
    # thriftgate is installed unpacked (wheels are never zip-imported), so the resource is a real file.
    return Path(str(files("proxy") / "defaults" / "pricing.yaml"))


def _cost_per_million(price: Price, usage: Usage) -> Decimal:
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


def _ceiling_per_million(price: Price, prompt_tokens: int, max_output_tokens: int) -> Decimal:
    # A cache write can cost more than plain input (Anthropic: 1.25x, 2x for an hour): the dearest prompt rate.
    prompt_rates = (price.input, price.cached_input, price.cache_write, price.cache_write_1h)
    prompt_rate = max(rate for rate in prompt_rates if rate is not None)
    output_rate = max(price.output, price.reasoning or _ZERO)
    return prompt_tokens * prompt_rate + max_output_tokens * output_rate


def _or_main(rate: Decimal | None, main_rate: Decimal) -> Decimal:
    # `is None`, not `or`: a zero rate (free cache reads) is a price, not a missing one.
    return main_rate if rate is None else rate


def _undated(name: str) -> str:
    return _DATE_SUFFIX.sub("", name)


def _dated_fine_tuned_names(names: Iterable[str]) -> dict[str, list[str]]:
    """"ft:gpt-4o" -> ["ft:gpt-4o-2024-08-06", "ft:gpt-4o-2024-11-20"], oldest first (dates sort as text)."""
    snapshots: dict[str, list[str]] = defaultdict(list)
    for name in sorted(names):
        if name.startswith("ft:") and _undated(name) != name:
            snapshots[_undated(name)].append(name)
    return dict(snapshots)


def _read_price_file(path: Path) -> dict[str, Price]:
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_YamlLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PricingError(f"{path}: cannot read the price table: {exc}") from exc
    if not isinstance(document, dict) or set(document) != {"models"} or not isinstance(document["models"], dict):
        raise _error(str(path), "(top level)", "one key, 'models', mapping model names to prices", _shape(document))
    return _parse_entries(document["models"], str(path), key_prefix="models.")


def _parse_entries(entries: Mapping[str, Any], origin: str, *, key_prefix: str) -> dict[str, Price]:
    return {str(name): _parse_price(fields, origin, f"{key_prefix}{name}") for name, fields in entries.items()}


def _parse_price(fields: Any, origin: str, key: str) -> Price:
    if not isinstance(fields, Mapping):
        raise _error(origin, key, f"a mapping of {', '.join(ENTRY_FIELDS)}", repr(fields))
    for field in fields:
        if field not in ENTRY_FIELDS:
            raise _error(origin, f"{key}.{field}", f"one of the fields {', '.join(ENTRY_FIELDS)}", "an unknown field")
    prices = {field: _usd_per_million(fields.get(field), origin, f"{key}.{field}", field) for field in PRICE_FIELDS}
    return Price(
        **prices,
        provider=_text(fields.get("provider", ""), origin, f"{key}.provider"),
        source=_text(fields.get("source", origin), origin, f"{key}.source"),
        as_of=_text(fields.get("as_of", ""), origin, f"{key}.as_of"),
    )


def _usd_per_million(value: Any, origin: str, key: str, field: str) -> Decimal | None:
    if value is None:
        if field in _REQUIRED_PRICES:
            raise _error(origin, key, _PRICE_EXPECTED, "nothing")
        return None
    # bool is an int to Python, but `input: yes` is a typo, not a price.
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise _error(origin, key, _PRICE_EXPECTED, repr(value))
    try:
        amount = Decimal(str(value))  # str() first: YAML's 0.15 is a float, and its repr is exactly "0.15"
    except InvalidOperation:
        raise _error(origin, key, _PRICE_EXPECTED, repr(value)) from None
    if not amount.is_finite() or amount < 0:
        raise _error(origin, key, _PRICE_EXPECTED, repr(value))
    return amount


def _text(value: Any, origin: str, key: str) -> str:
    if isinstance(value, date):  # YAML reads an unquoted 2025-10-21 as a date
        return value.isoformat()
    if not isinstance(value, str):
        raise _error(origin, key, "text", repr(value))
    return value


def _shape(document: Any) -> str:
    return f"keys {sorted(map(str, document))}" if isinstance(document, dict) else repr(type(document).__name__)


def _error(origin: str, key: str, expected: str, got: str) -> PricingError:
    return PricingError(f"{origin}: {key}: expected {expected}, got {got}")
