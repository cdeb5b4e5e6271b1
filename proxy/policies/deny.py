"""deny: refuse matching requests with a clear 403 (e.g. a model a team may not use)."""

from typing import Literal

from proxy.errors import Forbidden
from proxy.exchange import Exchange
from proxy.policies.base import PolicyConfig, Services


class Settings(PolicyConfig):
    type: Literal["deny"]
    message: str = "This request is not allowed by the proxy's policy."


class Policy:
    def __init__(self, settings: Settings, services: Services) -> None:
        self._message = f"{settings.message} (policy '{settings.name}')"

    async def on_request(self, ex: Exchange) -> str | None:
        raise Forbidden(self._message, param="model", code="denied_by_policy")
