"""Entry keys: who may see an entry (its tenant scope) and what shapes its answer (a canonical hash).

Two requests share an entry only when everything that shapes the answer is equal once written the
same way: key order, `"hi"` against `[{"type": "text", "text": "hi"}]`, `1` against `1.0`, a default
spelled out against one left out. What cannot change the answer (stream, user, metadata, ...) is left
out. The output limit is left out too: a stored answer is complete (never truncated), so it serves
any request whose limit it fits (checked when it is found).
"""

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from proxy.exchange import Exchange

Scope = Literal["team", "key", "global"]
NO_TENANT = "-"  # no auth: every request is one tenant (not a valid team or key id, so never a real one)

# Fields that change how the answer is delivered or billed, never what it says.
_DELIVERY = frozenset({"stream", "stream_options", "user", "metadata", "store", "service_tier", "prompt_cache_key",
                       "safety_identifier", "max_tokens", "max_completion_tokens"})
# OpenAI's defaults: spelling one out asks for what leaving it out gets.
_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "n": 1, "presence_penalty": 0.0, "frequency_penalty": 0.0,
             "logprobs": False, "parallel_tool_calls": True, "response_format": {"type": "text"}}
_NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id", "refusal")


def tenant(scope: Scope, ex: Exchange) -> str:
    if scope == "global":
        return "global"
    owner = ex.team if scope == "team" else ex.key_id
    return f"{scope}:{owner or NO_TENANT}"


def temperature(body: dict[str, Any]) -> float:
    value = body.get("temperature")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else _DEFAULTS["temperature"]


@dataclass(frozen=True, slots=True)
class ChatKey:
    question: str  # the last user message, as text ("" when the conversation does not end with one)
    context: str  # hash of everything else that shapes the answer
    whole: str  # hash of the whole request: the exact-match key


def chat_key(body: dict[str, Any]) -> ChatKey:
    canonical = {k: v for k, v in body.items() if k not in _DELIVERY and _DEFAULTS.get(k, _NONE) != v}
    for name in _NUMBERS:
        if isinstance(canonical.get(name), int | float) and not isinstance(canonical[name], bool):
            canonical[name] = float(canonical[name])
    if not canonical.get("tools") and canonical.get("tool_choice") == "none":
        del canonical["tool_choice"]
    elif canonical.get("tools") and canonical.get("tool_choice") == "auto":
        del canonical["tool_choice"]
    messages = [_message(m) for m in body.get("messages") or ()]
    canonical["messages"] = messages
    whole = _digest(canonical)
    question = ""
    if messages and messages[-1].get("role") == "user" and isinstance(messages[-1].get("content"), str):
        question = messages[-1]["content"]
        canonical["messages"] = messages[:-1]
    return ChatKey(question, _digest(canonical), whole)


def digest(*parts: str) -> str:
    """One id from several parts; the separator cannot occur inside a part of valid UTF-8 text."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


_NONE = object()


def _message(message: Any) -> Any:
    if not isinstance(message, dict):
        return message
    out = {k: message[k] for k in _MESSAGE_FIELDS if message.get(k) is not None}
    content = out.get("content")
    if isinstance(content, list) and len(content) == 1 and isinstance(content[0], dict) \
            and content[0].get("type") == "text" and isinstance(content[0].get("text"), str):
        out["content"] = content[0]["text"]
    return out


def _digest(canonical: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()
