"""The description of one upstream a request goes to (one deployment of the models it serves): plain data,
built once at start-up from the config (stages.upstream.upstream_from_config), carried on the exchange."""

from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: str
    api_key: str | None  # resolved once at start-up from the configured env var
    timeout: aiohttp.ClientTimeout  # connect, one attempt as a whole, and (when configured) the silence between reads
    provider: Any  # proxy.dialects.providers: the API it speaks, its credentials, each attempt's leg
    key_env: str | None = None  # that variable's name: a request that needs the key while it is unset is refused
    model: str | None = None  # the name this deployment gives the model it is asked for; None: the same
    weight: float = 1.0  # share of its models' requests, among the deployments that are up
    rpm: int | None = None  # its own requests per minute
    tpm: int | None = None  # its own tokens per minute
