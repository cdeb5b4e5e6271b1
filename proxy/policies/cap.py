"""cap: clamp (or reject) the requested output size and the number of alternatives.

A request that sets no output limit gets the cap as its limit: an unbounded request is exactly
what a cap is for.
"""

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from proxy.errors import BadRequest
from proxy.exchange import Exchange
from proxy.policies.base import PolicyConfig, Services

Positive = Annotated[int, Field(ge=1)]


class Settings(PolicyConfig):
    type: Literal["cap"]
    max_tokens: Positive | None = None
    n: Positive | None = None
    on_exceed: Literal["clamp", "reject"] = "clamp"

    @model_validator(mode="after")
    def _caps_something(self) -> "Settings":
        if self.max_tokens is None and self.n is None:
            raise ValueError("a cap needs max_tokens, n, or both")
        return self


class Policy:
    MEASURED_BY_HOLDOUT = True

    def __init__(self, settings: Settings, services: Services) -> None:
        self._max_tokens = settings.max_tokens
        self._n = settings.n
        self._reject = settings.on_exceed == "reject"

    async def on_request(self, ex: Exchange) -> str | None:
        body = ex.body
        if body is None or not ex.dialect.max_output_fields:
            return None  # embeddings, token counts: no output to cap
        actions = []
        if self._max_tokens is not None and self._cap_output(ex, body):
            actions.append("clamp_max_tokens")
        if self._n is not None and self._cap_n(body):
            actions.append("clamp_n")
        if not actions:
            return None
        ex.edit_body()
        return "+".join(actions)

    def _cap_output(self, ex: Exchange, body: dict[str, Any]) -> bool:
        present = [f for f in ex.dialect.max_output_fields if body.get(f) is not None]
        if not present:
            body[ex.dialect.output_field_when_unset] = ex.max_output_tokens = self._max_tokens
            return True
        changed = False
        for field in present:
            if body[field] > self._max_tokens:
                self._refuse_if_rejecting(field, body[field], self._max_tokens)
                body[field] = self._max_tokens
                changed = True
        ex.max_output_tokens = min(ex.max_output_tokens or self._max_tokens, self._max_tokens)
        return changed

    def _cap_n(self, body: dict[str, Any]) -> bool:
        n = body.get("n")
        if not isinstance(n, int) or n <= self._n:
            return False
        self._refuse_if_rejecting("n", n, self._n)
        body["n"] = self._n
        return True

    def _refuse_if_rejecting(self, field: str, asked: int, limit: int) -> None:
        if self._reject:
            raise BadRequest(f"'{field}' is {asked}, above this proxy's limit of {limit}.", param=field,
                             code="cap_exceeded")
