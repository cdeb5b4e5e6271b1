"""prompt_cache: place Anthropic prompt-cache breakpoints on long stable prefixes, and price what they save.

For a request an Anthropic upstream serves, the policy hands the exchange a plan; the upstream's leg
applies it to the Messages body it sends (a native one, or one translated from an OpenAI chat
request), marking the ends of the tool definitions, the system prompt and a conversation's earlier
turns when the prefix is long enough to cache (proxy/dialects/anthropic_cache.py). A request whose
sender placed its own breakpoints is left alone. OpenAI caches prompts by itself: there the policy
places nothing and the cache shows in the usage it measures (cached_prompt tokens, the hit rate).

The saving is exact and net: what the same tokens would have cost with no cache at all, minus what
they cost. Reads save 90% of the input price; writes cost 25% more (5 minutes) or 100% more (an
hour), so a write that is never read back is a negative saving.
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from proxy.accounting.tokens import TokenCounter
from proxy.accounting.usage import Usage
from proxy.dialects.anthropic_cache import PARTS, minimum_cacheable, place
from proxy.exchange import Exchange, Saving
from proxy.policies.base import PolicyConfig, Services

Part = Literal["tools", "system", "conversation"]


class Settings(PolicyConfig):
    type: Literal["prompt_cache"]
    ttl: Literal["5m", "1h"] = "5m"  # 1h writes cost 2x input instead of 1.25x: for prefixes reused less often
    cache: tuple[Part, ...] = PARTS  # which prefixes to mark
    min_prefix_tokens: Annotated[int, Field(ge=1)] | None = None  # default: the model's minimum cacheable length


@dataclass(slots=True)
class CachePlan:
    """What an Anthropic upstream's leg applies to the body it sends; remembers where it placed breakpoints."""

    tokens: TokenCounter
    ttl: str
    parts: tuple[str, ...]
    minimum: int | None
    placed: tuple[str, ...] = ()

    def apply(self, body: dict) -> bool:
        placed = place(body, self.tokens.for_model(str(body.get("model", ""))), ttl=self.ttl, parts=self.parts,
                       minimum=self.minimum)
        if placed:
            self.placed = tuple(placed)
        return bool(placed)


class Policy:
    def __init__(self, settings: Settings, services: Services) -> None:
        self._name = settings.name or "prompt_cache"
        self._settings = settings
        self._tokens = services.tokens
        self._prices = services.prices
        self._upstreams = services.upstreams

    async def on_request(self, ex: Exchange) -> str | None:
        if ex.body is None or not ex.dialect.max_output_fields:
            return None  # nothing is generated (embeddings, token counts): nothing is cached
        upstream = self._upstreams.route(ex.model) if self._upstreams is not None else None
        if upstream is None or upstream.provider.wire != "anthropic":
            return None  # OpenAI caches by itself: measured, never marked
        settings = self._settings
        ex.prompt_cache = CachePlan(self._tokens, settings.ttl, settings.cache, settings.min_prefix_tokens)
        minimum = settings.min_prefix_tokens or minimum_cacheable(ex.model)
        try:
            long_enough = ex.prompt_tokens() >= minimum
        except ValueError:
            return None  # a body the counter cannot read: the upstream says what is wrong with it
        return "cache_breakpoints" if long_enough else None

    async def on_response(self, ex: Exchange) -> None:
        plan, usage = ex.prompt_cache, ex.usage
        if not isinstance(plan, CachePlan) or not plan.placed or usage is None or ex.cost_nanos is None:
            return
        uncached = Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                         reasoning_tokens=usage.reasoning_tokens)
        would_have_cost = self._prices.cost_nanos(ex.model, uncached)
        if would_have_cost is not None:
            paid = ex.cost_nanos - ex.side_cost_nanos
            ex.savings.append(Saving(self._name, "prompt_cache", would_have_cost - paid))
