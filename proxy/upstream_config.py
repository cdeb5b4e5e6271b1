"""The `upstreams:` section: the APIs the proxy calls, and which one serves a model.

Secrets never appear here: only the names of the environment variables that hold them.
"""

import fnmatch
import functools
import os
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_UPSTREAM_URL = "https://api.openai.com/v1"
ANTHROPIC_URL = "https://api.anthropic.com/v1"
ANTHROPIC_API_VERSION = "2026-10-21"  # proxy.dialects.anthropic.API_VERSION (config imports no dialect)
KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


class UpstreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1)]
    base_url: Annotated[str, Field(pattern=r"^https?://")]
    provider: Literal["openai", "anthropic"] = "openai"  # the API it speaks (docs/anthropic.md)
    api_key_env: str | None = None  # default: OPENAI_API_KEY, or ANTHROPIC_API_KEY for provider anthropic
    models: tuple[str, ...] = ("*",)
    # Anthropic only: the anthropic-version sent when the client sent none (an OpenAI client's request),
    # and max_tokens for a translated request that set none (Anthropic requires it).
    anthropic_version: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] = ANTHROPIC_API_VERSION
    default_max_tokens: Annotated[int, Field(gt=0)] = 4096
    # Upstreams listing the same glob are deployments of those models (docs/routing.md): chosen by weight,
    # each with its own requests and tokens per minute, and the name it gives the model when it differs.
    weight: Annotated[float, Field(gt=0)] = 1.0
    rpm: Annotated[int, Field(gt=0)] | None = None
    tpm: Annotated[int, Field(gt=0)] | None = None
    model: Annotated[str, Field(min_length=1)] | None = None
    # Override routing.timeouts for this upstream: connect, and the longest silence between two reads.
    connect_timeout_seconds: Annotated[float, Field(gt=0)] | None = None
    read_timeout_seconds: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _key_env_of_provider(cls, data: Any) -> Any:
        if isinstance(data, dict) and "api_key_env" not in data:
            data = {**data, "api_key_env": KEY_ENV.get(data.get("provider", "openai"))}
        return data

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, url: str) -> str:
        return url.rstrip("/")

    @model_validator(mode="after")
    def _rename_names_models(self) -> "UpstreamConfig":
        if self.model is not None and any(set(pattern) & set("*?[") for pattern in self.models):
            raise ValueError("model renames what the client asks for: list the names it applies to in models, "
                             "without wildcards")
        return self

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None




def default_upstreams() -> tuple[UpstreamConfig, ...]:
    """No `upstreams:` section: OpenAI (or $OPENAI_BASE_URL); with an Anthropic key in the environment, Claude
    models go to Anthropic and the rest to OpenAI."""
    openai = UpstreamConfig(name="openai", base_url=os.environ.get("OPENAI_BASE_URL", DEFAULT_UPSTREAM_URL))
    if not os.environ.get(KEY_ENV["anthropic"]):
        return (openai,)
    return (UpstreamConfig(name="anthropic", base_url=ANTHROPIC_URL, provider="anthropic", models=("claude-*",)),
            openai)


# Model names are the client's to choose: what is worked out per name is remembered for this many.
MODEL_NAMES_REMEMBERED = 4096


class UpstreamMatcher:
    """Model name -> the first upstream whose glob matches; compiled once, memoised per name."""

    def __init__(self, upstreams: tuple[UpstreamConfig, ...]) -> None:
        self._patterns = [
            (re.compile("|".join(fnmatch.translate(p) for p in u.models)), u) for u in upstreams if u.models
        ]
        self.default = upstreams[0]
        self.for_model = functools.lru_cache(maxsize=MODEL_NAMES_REMEMBERED)(self._for_model)

    def _for_model(self, model: str) -> UpstreamConfig | None:
        return next((u for pattern, u in self._patterns if pattern.match(model)), None)

