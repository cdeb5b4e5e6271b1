"""The settings lookup policies share.

A lookup policy's `mode` widens the generic on | shadow | off with read_only (serve hits, store
nothing) and write_only (store answers, serve nothing: fills a cache before it is trusted). The
chain sees read_only and write_only as `on`: the policy itself skips its read or its write.
Imported by the policy modules only (proxy.policies.* import this, and it imports proxy.policies.base).
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from proxy.lookup.config import Duration, Similarity
from proxy.policies.base import PolicyConfig


class LookupSettings(PolicyConfig):
    mode: Literal["on", "shadow", "off", "read_only", "write_only"] = "on"
    scope: Literal["team", "key", "global"] = "team"  # whose requests share entries
    # Never serve a stored answer to a request sampling hotter than this (None: any temperature).
    max_temperature: Annotated[float, Field(ge=0)] | None = None

    @property
    def reads(self) -> bool:
        return self.mode != "write_only"

    @property
    def writes(self) -> bool:
        return self.mode != "read_only"


class CacheSettings(LookupSettings):
    ttl: Duration = 3600.0
    max_entries: Annotated[int, Field(gt=0)] = 100_000  # per policy, over every scope
    cache_tool_calls: bool = False  # store answers that call tools (off: they depend on the world)


class SimilaritySettings(BaseModel):
    """What a semantic match needs, shared by semantic_cache and answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    embedder: str
    threshold: Similarity = 0.92
    # In shadow mode, the lowest similarity still recorded, so `lookup report` can show the bands below.
    shadow_floor: Similarity = 0.80
    # Shadow mode counts a would-be hit as right when the fresh answer's embedding is this close to the stored one's.
    agreement: Similarity = 0.90
