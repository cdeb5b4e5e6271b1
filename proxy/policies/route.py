"""route: send matching work to a cheaper model; the saving is exact on the tokens actually used."""

from typing import Annotated, Literal

from pydantic import Field

from proxy.exchange import Exchange, Saving
from proxy.policies.base import PolicyConfig, Services


class Settings(PolicyConfig):
    type: Literal["route"]
    to: Annotated[str, Field(min_length=1)]

    def models_named(self) -> tuple[str, ...]:
        return (self.to,)


class Policy:
    def __init__(self, settings: Settings, services: Services) -> None:
        self._name = settings.name or "route"
        self._to = settings.to
        self._prices = services.prices

    async def on_request(self, ex: Exchange) -> str | None:
        if ex.model == self._to:
            return None
        ex.set_model(self._to)
        return "route"

    async def on_response(self, ex: Exchange) -> None:
        """What the requested model would have cost for the same tokens, minus what was paid."""
        if ex.usage is None or ex.cost_nanos is None:
            return
        would_have_cost = self._prices.cost_nanos(ex.requested_model, ex.usage)
        if would_have_cost is not None:
            ex.savings.append(Saving(self._name, "routing", would_have_cost - ex.cost_nanos))
