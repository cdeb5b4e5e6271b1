"""The description of one upstream a request goes to: plain data, built once at start-up from the config
(stages.upstream.upstream_from_config), carried on the exchange."""

from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: str
    api_key: str | None  # resolved once at start-up from the configured env var
    timeout: aiohttp.ClientTimeout
    provider: Any  # proxy.dialects.providers: the API it speaks, its credentials, each attempt's leg
    key_env: str | None = None  # that variable's name: a request that needs the key while it is unset is refused
