"""concise: ask the model for a short answer, once (40-90% of output spend is verbosity)."""

from typing import Any, Literal

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
        body = ex.body
        if body is None:
            return None
        inject = {"chat": self._into_messages, "responses": self._into_instructions,
                  "completions": self._into_prompt}.get(ex.endpoint)
        if inject is None or not inject(body):
            return None
        ex.edit_body()
        return "inject"

    def _into_messages(self, body: dict[str, Any]) -> bool:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return False
        leading = 0
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("system", "developer"):
                break
            if self._instruction in _text(message.get("content")):
                return False  # already asked (by the client, or by this proxy upstream of us)
            leading += 1
        messages.insert(leading, {"role": "system", "content": self._instruction})
        return True

    def _into_instructions(self, body: dict[str, Any]) -> bool:
        instructions = body.get("instructions")
        if not instructions:
            body["instructions"] = self._instruction
            return True
        if not isinstance(instructions, str) or self._instruction in instructions:
            return False
        body["instructions"] = f"{instructions}\n\n{self._instruction}"
        return True

    def _into_prompt(self, body: dict[str, Any]) -> bool:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or prompt.startswith(self._instruction):
            return False
        body["prompt"] = f"{self._instruction}\n\n{prompt}"
        return True


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""
