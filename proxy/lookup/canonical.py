"""Entry keys: who may see an entry (its tenant scope) and what shapes its answer (a canonical hash), for
chat, completions and the Responses API.

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
                       "safety_identifier", "max_tokens", "max_completion_tokens", "max_output_tokens"})
# OpenAI's defaults: spelling one out asks for what leaving it out gets.
_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "n": 1, "presence_penalty": 0.0, "frequency_penalty": 0.0,
             "logprobs": False, "parallel_tool_calls": True, "response_format": {"type": "text"}}
_ENDPOINT_DEFAULTS = {
    "chat": _DEFAULTS,
    "completions": _DEFAULTS | {"logprobs": None, "echo": False, "best_of": 1, "suffix": None},
    "responses": _DEFAULTS | {"text": {"format": {"type": "text"}}, "truncation": "disabled", "instructions": None,
                              "previous_response_id": None},
}
_NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id", "refusal")
_TEXT_PARTS = ("text", "input_text")  # a chat text part; a Responses API input part


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


def request_key(endpoint: str, body: dict[str, Any]) -> ChatKey:
    """Chat: the last user message is the question. Completions: the prompt (one string). Responses: the input
    string, or the last input item when it is the user's text. Other endpoints' keys never meet chat's."""
    canonical = _canonical(body, _ENDPOINT_DEFAULTS[endpoint])
    if endpoint == "chat":
        messages = canonical["messages"] = [_message(m) for m in body.get("messages") or ()]
    elif endpoint == "completions":
        canonical["endpoint"] = endpoint
        prompt = body.get("prompt")
        messages = [{"role": "user", "content": prompt[0] if isinstance(prompt, list) and len(prompt) == 1 else prompt}]
        canonical["prompt"] = messages
    else:
        canonical["endpoint"] = endpoint
        given = body.get("input")
        messages = [{"role": "user", "content": given}] if isinstance(given, str) else [_message(m) for m in given or ()]
        canonical["input"] = messages
    whole = _digest(canonical)
    question = ""
    if messages and messages[-1].get("role") == "user" and isinstance(messages[-1].get("content"), str):
        question = messages[-1]["content"]
        messages.pop()
    return ChatKey(question, _digest(canonical), whole)


def _canonical(body: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    canonical = {k: v for k, v in body.items() if k not in _DELIVERY and defaults.get(k, _NONE) != v}
    for name in _NUMBERS:
        if isinstance(canonical.get(name), int | float) and not isinstance(canonical[name], bool):
            canonical[name] = float(canonical[name])
    if not canonical.get("tools") and canonical.get("tool_choice") == "none":
        del canonical["tool_choice"]
    elif canonical.get("tools") and canonical.get("tool_choice") == "auto":
        del canonical["tool_choice"]
    return canonical


def digest(*parts: str) -> str:
    """One id from several parts; the separator cannot occur inside a part of valid UTF-8 text."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


_NONE = object()


def _message(message: Any) -> Any:
    if not isinstance(message, dict):
        return message
    if message.get("type", "message") != "message":
        return message  # a Responses API item other than a message (a function call, its output): as it is
    out = {k: message[k] for k in _MESSAGE_FIELDS if message.get(k) is not None}
    content = out.get("content")
    if isinstance(content, list) and len(content) == 1 and isinstance(content[0], dict) \
            and content[0].get("type") in _TEXT_PARTS and isinstance(content[0].get("text"), str):
        out["content"] = content[0]["text"]
    return out


def _digest(canonical: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()
