"""concise: ask the model for a short answer, once (40-90% of output spend is verbosity)."""

from typing import Literal

from proxy.exchange import Exchange
from proxy.policies.base import PolicyConfig, Services

DEFAULT_INSTRUCTION = "Answer concisely."


class Settings(PolicyConfig):
    type: Literal["concise"]
    instruction: str = DEFAULT_INSTRUCTION


class Policy:
    MEASURED_BY_HOLDOUT = True

    def __init__(self, settings: Settings, services: Services) -> None:
        self._instruction = settings.instruction

    async def on_request(self, ex: Exchange) -> str | None:
        if ex.body is None or not ex.dialect.add_instruction(ex.body, self._instruction):
            return None
        ex.edit_body()
        return "inject"
