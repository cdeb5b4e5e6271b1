"""What of an answer may be stored: one complete choice, from a whole answer or a finished stream.

Never stored: errors, answers cut by the output limit (finish_reason length) or a content filter,
streams that broke off or whose client left, and tool calls unless the policy stores them.
"""

from typing import Any

import orjson

from proxy import sse
from proxy.exchange import Exchange

_MESSAGE_FIELDS = ("role", "content", "refusal", "tool_calls")


def fresh_choice(ex: Exchange, *, tool_calls: bool) -> tuple[dict[str, Any], str] | None:
    """(the answer's choice, the model that answered), or None when it must not be stored."""
    if ex.status != 200 or ex.error_code or ex.client_disconnected:
        return None
    if ex.stream and not isinstance(ex.stream_events, tuple):
        ex.stream_events = tuple(ex.stream_events)  # split once: every lookup policy reads the same answer
    if ex.endpoint == "completions":
        found = _completion(ex.stream_events if ex.stream else None, ex.answer)
    elif ex.endpoint == "responses":
        found = _response(_last_response(ex.stream_events) if ex.stream else ex.answer)
    else:
        found = _streamed(ex.stream_events) if ex.stream else _whole(ex.answer)
    if found is None:
        return None
    choice, model = found
    message, finish = choice.get("message"), choice.get("finish_reason")
    if not isinstance(message, dict):
        return None
    if message.get("tool_calls"):
        if not tool_calls or finish not in ("stop", "tool_calls"):
            return None
    elif finish != "stop" or not isinstance(message.get("content"), str) and not message.get("refusal"):
        return None
    kept = {name: message[name] for name in _MESSAGE_FIELDS if message.get(name) is not None}
    return {"message": kept, "finish_reason": finish}, model or ex.model


def _whole(answer: Any) -> tuple[dict[str, Any], str] | None:
    if not isinstance(answer, dict):
        return None
    choices = answer.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        return None
    model = answer.get("model")
    return choices[0], model if isinstance(model, str) else ""


def _choices(events: Any) -> tuple[list[dict[str, Any]], str] | None:
    """A chat or completions stream's choice entries in order, and the model it named; None when a chunk does
    not parse or a second choice shows."""
    choices, model = [], ""
    for event in events:
        data = sse.event_data(event)
        if not data or data == sse.DONE:
            continue
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        model = chunk.get("model") or model
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                return None  # more than one choice
            choices.append(choice)
    return choices, model


def _streamed(events: Any) -> tuple[dict[str, Any], str] | None:
    content: list[str] = []
    refusal: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    streamed = _choices(events)
    if streamed is None:
        return None
    choices, model = streamed
    for choice in choices:
        delta = choice.get("delta") or {}
        content.append(delta.get("content") or "")
        refusal.append(delta.get("refusal") or "")
        for call in delta.get("tool_calls") or ():
            _merge_call(calls.setdefault(call.get("index", 0), {}), call)
        finish = choice.get("finish_reason") or finish
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if any(refusal):
        message["refusal"] = "".join(refusal)
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    elif message["content"] is None and "refusal" not in message:
        message["content"] = ""
    return {"message": message, "finish_reason": finish}, model


def _merge_call(call: dict[str, Any], delta: dict[str, Any]) -> None:
    """A streamed tool call arrives in pieces: id and name first, then its arguments in fragments."""
    for name in ("id", "type"):
        if delta.get(name):
            call[name] = delta[name]
    function = call.setdefault("function", {"name": "", "arguments": ""})
    piece = delta.get("function") or {}
    function["name"] += piece.get("name") or ""
    function["arguments"] += piece.get("arguments") or ""


def _as_choice(text: str, finish_reason: str | None, model: Any) -> tuple[dict[str, Any], str]:
    message = {"role": "assistant", "content": text}
    return {"message": message, "finish_reason": finish_reason}, model if isinstance(model, str) else ""


def _completion(events: Any, answer: Any) -> tuple[dict[str, Any], str] | None:
    """A legacy completion's one choice, whole or streamed, as a chat choice."""
    if events is None:
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
            return None
        text = choices[0].get("text")
        return _as_choice(text, choices[0].get("finish_reason"), answer.get("model")) if isinstance(text, str) else None
    streamed = _choices(events)
    if streamed is None:
        return None
    choices, model = streamed
    finish = next((c["finish_reason"] for c in reversed(choices) if c.get("finish_reason")), None)
    return _as_choice("".join(choice.get("text") or "" for choice in choices), finish, model)


def _last_response(events: Any) -> Any:
    """A Responses API stream ends with response.completed (or .incomplete, .failed), carrying the whole response."""
    for event in reversed(events):
        data = sse.event_data(event)
        if data and data.startswith(b"{"):
            try:
                return orjson.loads(data).get("response")
            except orjson.JSONDecodeError:
                return None
    return None


def _response(response: Any) -> tuple[dict[str, Any], str] | None:
    """A completed response whose output is one assistant message of text (reasoning items aside)."""
    if not isinstance(response, dict) or response.get("status") != "completed":
        return None
    output = [item for item in response.get("output") or () if isinstance(item, dict) and item.get("type") != "reasoning"]
    if len(output) != 1 or output[0].get("type") != "message" or output[0].get("role") != "assistant":
        return None  # a function call, a web search, ...: they depend on the world
    parts = output[0].get("content") or []
    if not parts or any(not isinstance(part, dict) or part.get("type") != "output_text" for part in parts):
        return None  # a refusal, or something this version does not know how to serve again
    return _as_choice("".join(str(part.get("text") or "") for part in parts), "stop", response.get("model"))
