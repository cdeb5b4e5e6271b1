"""The description of one upstream a request goes to (one deployment of the models it serves): plain data,
built once at start-up from the config (stages.upstream.upstream_from_config), carried on the exchange."""

from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: str
    authorization: str | None  # resolved once at start-up from the configured env var
    timeout: aiohttp.ClientTimeout  # connect, the whole request, and (when configured) the silence between reads
    model: str | None = None  # the name this deployment gives the model it is asked for; None: the same
    weight: float = 1.0  # share of its models' requests, among the deployments that are up
    rpm: int | None = None  # its own requests per minute
    tpm: int | None = None  # its own tokens per minute
