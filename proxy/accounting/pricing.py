"""The price table: which price a model name a client sent goes by, and what a request costs at it.

Prices come from price tables and the config's overrides (proxy/accounting/price_files.py). Later files win
over earlier ones and overrides win over every file. An entry replaces the earlier entry of its name whole, so
a stale cached_input never mixes with a new input price.
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
"""

import fnmatch
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

from proxy.accounting.money import usd_to_nanos
from proxy.accounting.price import (Price, batch_price, ceiling_per_million, ceiling_rates, cost_per_million,
                                    nanos_per_token)
from proxy.accounting.price_files import read_price_sources
from proxy.accounting.usage import Usage

# Client-chosen names must not grow memory without bound; clearing lets the real names return at once.
_LOOKUP_CACHE_LIMIT = 4096
# OpenAI's -2024-08-06 and -0613, Anthropic's -20241022, Mistral's -2411.
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")
_GLOB_CHARS = frozenset("*?[")


class PriceTable:
    __slots__ = ("_exact", "_patterns", "_ft_snapshots", "_models", "_resolved", "_per_token", "_ceilings")

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
        self._per_token: dict[str, Price | None] = {}  # model -> its price in nano-dollars per token (nanos_per_token)
        # model -> its dearest prompt and output rates in nano-dollars per token: a budget estimates every request
        self._ceilings: dict[str, tuple[int, int]] = {}

    @classmethod
    def load(
        cls, files: list[Path], overrides: Mapping[str, Any], *, overrides_origin: str = "pricing overrides"
    ) -> "PriceTable":
        """Read the price files, then the overrides; overrides_origin names them in error messages."""
        return cls(read_price_sources(files, overrides, overrides_origin))

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
        if price is None:
            return None
        per_token = self._in_nanos_per_token(model, price)
        if per_token is not None:
            return cost_per_million(per_token, usage)
        return usd_to_nanos(cost_per_million(price, usage).scaleb(-6))

    def batch_cost_nanos(self, model: str, usage: Usage) -> int | None:
        """What the request costs through the provider's Batch API; None when no batch rate is known."""
        price = self.lookup(model)
        batch = None if price is None else batch_price(price)
        return None if batch is None else usd_to_nanos(cost_per_million(batch, usage).scaleb(-6))

    def estimate_nanos(self, model: str, prompt_tokens: int, max_output_tokens: int, *,
                       batch: bool = False) -> int | None:
        """The most the request can cost, whatever part of it the provider caches or spends reasoning
        (batch: through a Batch API, at its batch rate when one is known)."""
        if not batch and (rates := self._ceilings.get(model)) is not None:
            return prompt_tokens * rates[0] + max_output_tokens * rates[1]
        price = self.lookup(model)
        if price is None:
            return None
        if batch:
            price = batch_price(price) or price
        elif (per_token := self._in_nanos_per_token(model, price)) is not None:
            if len(self._ceilings) >= _LOOKUP_CACHE_LIMIT:
                self._ceilings.clear()
            self._ceilings[model] = rates = tuple(map(int, ceiling_rates(per_token)))
            return prompt_tokens * rates[0] + max_output_tokens * rates[1]
        return usd_to_nanos(ceiling_per_million(price, prompt_tokens, max_output_tokens).scaleb(-6))

    def _in_nanos_per_token(self, model: str, price: Price) -> Price | None:
        """The model's price in whole nano-dollars per token, when it has one (integer arithmetic: ~3x faster)."""
        try:
            return self._per_token[model]
        except KeyError:
            pass
        per_token = nanos_per_token(price)
        if len(self._per_token) >= _LOOKUP_CACHE_LIMIT:
            self._per_token.clear()
        self._per_token[model] = per_token
        return per_token

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


def _undated(name: str) -> str:
    return _DATE_SUFFIX.sub("", name)


def _dated_fine_tuned_names(names: Iterable[str]) -> dict[str, list[str]]:
    """"ft:gpt-4o" -> ["ft:gpt-4o-2024-08-06", "ft:gpt-4o-2024-11-20"], oldest first (dates sort as text)."""
    snapshots: dict[str, list[str]] = defaultdict(list)
    for name in sorted(names):
        if name.startswith("ft:") and _undated(name) != name:
            snapshots[_undated(name)].append(name)
    return dict(snapshots)
