"""cascade: try a cheaper model first; escalate to the requested one when the answer fails a check.

Non-streamed chat requests only (a streamed answer cannot be taken back once sent). Both attempts
are priced: an accepted try saves the requested model's price on the same tokens; an escalated one
costs its own price on top, which is recorded as a ledger row of its own and a negative saving.
"""

import re
from typing import Annotated, Any, Literal

import jsonschema
import orjson
from pydantic import Field

from proxy.exchange import Exchange, Saving
from proxy.policies.base import PolicyConfig, Services

Check = Literal["truncated", "empty", "refusal", "invalid_json"]
DEFAULT_REFUSALS = (r"^\s*I(?:'m| am) sorry,? but I can(?:no|')t", r"^\s*I can(?:no|')t (?:help|assist) with")


class Settings(PolicyConfig):
    type: Literal["cascade"]
    try_model: Annotated[str, Field(alias="try", min_length=1)]
    escalate_on: tuple[Check, ...] = ("truncated", "empty", "refusal", "invalid_json")
    refusal_patterns: tuple[str, ...] = DEFAULT_REFUSALS

    def models_named(self) -> tuple[str, ...]:
        return (self.try_model,)


class Policy:
    def __init__(self, settings: Settings, services: Services) -> None:
        self._name = settings.name or "cascade"
        self._try = settings.try_model
        self._checks = settings.escalate_on
        self._refusal = re.compile("|".join(settings.refusal_patterns), re.IGNORECASE)
        self._prices = services.prices
        self._side_calls = services.side_calls

    async def on_request(self, ex: Exchange) -> str | None:
        if ex.endpoint != "chat" or ex.stream or ex.model == self._try:
            return None
        attempt = await self._side_calls.try_model(ex, self._try)
        failed = self._failed_check(attempt.exchange.status, attempt.answer, ex.body)
        if failed is None and not ex.shadow:
            self._side_calls.adopt(ex, attempt)
            return "accept"
        if failed is None:  # shadow mode: the try was paid for, so it is recorded; the request goes on
            await self._side_calls.record(attempt, "cascade_shadow_accepted")
            return "accept"
        await self._side_calls.record(attempt, f"cascade_escalated_{failed}")
        if attempt.exchange.cost_nanos:
            ex.savings.append(Saving(self._name, "cascade", -attempt.exchange.cost_nanos))
        return f"escalate_{failed}"

    async def on_response(self, ex: Exchange) -> None:
        if ex.model != self._try or ex.usage is None or ex.cost_nanos is None:
            return  # escalated: its cost is already recorded
        would_have_cost = self._prices.cost_nanos(ex.requested_model, ex.usage)
        if would_have_cost is not None:
            ex.savings.append(Saving(self._name, "cascade", would_have_cost - ex.cost_nanos))

    def _failed_check(self, status: int, answer: Any, request: dict[str, Any]) -> str | None:
        if status >= 400 or not isinstance(answer, dict):
            return "error"
        choices = answer.get("choices") or [{}]
        message = choices[0].get("message") or {}
        content = message.get("content") or ""
        for check in self._checks:
            if check == "truncated" and any(c.get("finish_reason") == "length" for c in choices):
                return check
            if check == "empty" and not content.strip() and not message.get("tool_calls"):
                return check
            if check == "refusal" and (message.get("refusal") or self._refusal.search(content)):
                return check
            if check == "invalid_json" and not _valid_json(content, request.get("response_format")):
                return check
        return None


def _valid_json(content: str, response_format: Any) -> bool:
    """True unless JSON was asked for and the answer is not JSON (or breaks the asked-for schema)."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind not in ("json_object", "json_schema"):
        return True
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return False
    schema = (response_format.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
    if not schema:
        return kind != "json_object" or isinstance(value, dict)
    return jsonschema.Draft202012Validator(schema).is_valid(value)
