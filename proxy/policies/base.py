"""What every policy type shares: its config envelope, the services it may use, and the protocol.

A policy type is one module with a `Settings` (its config, a PolicyConfig subclass) and a class
built as `Policy(settings, services)` that implements only the hooks it needs:

    async def on_request(self, ex) -> str | None   # edit the request, answer early, or raise ProxyError;
                                                   # returns the action taken (for metrics), or None
    async def on_response(self, ex) -> None        # after the answer is settled (fail open)
    async def on_error(self, ex) -> None           # after a failed answer (fail open)
"""

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from proxy.accounting.pricing import PriceTable
from proxy.accounting.tokens import TokenCounter

if TYPE_CHECKING:
    from proxy.lookup.service import Lookups
    from proxy.policies.side_calls import SideCalls
    from proxy.stages.upstream import UpstreamClient

Ratio = Annotated[float, Field(ge=0, lt=1)]
Endpoint = Literal["chat", "completions", "responses", "embeddings", "messages", "count_tokens"]
Count = Annotated[int, Field(ge=0)]


class MatchConfig(BaseModel):
    """Every condition given must hold; none given matches every request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: tuple[str, ...] | None = None  # globs on the requested model
    endpoints: tuple[Endpoint, ...] | None = None
    teams: tuple[str, ...] | None = None
    keys: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None  # any of these in the x-thriftgate-tags header
    min_prompt_tokens: Count | None = None
    max_prompt_tokens: Count | None = None
    min_max_tokens: Count | None = None  # the requested output limit
    max_max_tokens: Count | None = None
    min_prompt_to_output_ratio: Annotated[float, Field(ge=0)] | None = None
    max_prompt_to_output_ratio: Annotated[float, Field(ge=0)] | None = None
    last_message_regex: str | None = None
    has_tools: bool | None = None
    has_images: bool | None = None
    has_response_format: bool | None = None
    stream: bool | None = None

    @field_validator("last_message_regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern


class PolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None  # default: "<type>" or "<type>-<index>" when the type repeats
    type: str
    match: MatchConfig = MatchConfig()
    mode: Literal["on", "shadow", "off"] = "on"
    holdout: Ratio = 0.0  # this fraction of matching requests passes unchanged, to measure savings


@dataclass(frozen=True, slots=True)
class Services:
    """What policies may use; built once by make_app."""

    prices: PriceTable
    tokens: TokenCounter
    side_calls: "SideCalls"
    lookups: "Lookups | None" = None  # embedders and stored answers, for the lookup policies
    upstreams: "UpstreamClient | None" = None  # which upstream (and provider) serves a model
