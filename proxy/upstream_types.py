"""The description of one upstream a request goes to: plain data, built once at start-up from the config
(stages.upstream.upstream_from_config), carried on the exchange."""

from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: str
    authorization: str | None  # resolved once at start-up from the configured env var
    timeout: aiohttp.ClientTimeout
    key_env: str | None = None  # that variable's name: a request that needs the key while it is unset is refused
