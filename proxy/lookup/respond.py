"""A stored answer served like the real thing, in the asking endpoint's shape: a chat completion, a legacy
text completion or a Responses API response, whole or as that endpoint's SSE stream.

The body's usage is zero: nothing was generated for this request. What the lookup cost (its
embedding) is in the x-thriftgate-cost-usd header and, for a stream that asked for usage, in
`usage.cost_usd`, as on any answer.
"""

import re
import time
from typing import Any

import orjson
from aiohttp import web

from proxy import sse
from proxy.accounting.money import format_usd

_PIECE = re.compile(r"\S+\s*|\s+")  # words with their trailing space: a stream of word-sized deltas
_WORDS_PER_CHUNK = 4
_ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def answer(endpoint: str, *, request_id: str, model: str, choice: dict[str, Any], stream: bool, include_usage: bool,
           cost_nanos: int, request: dict[str, Any]) -> web.Response:
    created = int(time.time())
    if endpoint == "completions":
        return _completion(request_id, created, model, choice, stream, include_usage, cost_nanos)
    if endpoint == "responses":
        return _response(request_id, created, model, choice, stream, request)
    completion_id = "chatcmpl-" + request_id.removeprefix("tg-")
    if not stream:
        body = {"id": completion_id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{**choice, "index": 0}], "usage": _ZERO_USAGE}
        return web.Response(body=orjson.dumps(body), content_type="application/json")
    return _sse(_stream_events(completion_id, created, model, choice, include_usage, cost_nanos))


def _sse(events: list[bytes]) -> web.Response:
    return web.Response(body=b"".join(events), content_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _pieces(choice: dict[str, Any]) -> list[str]:
    """The text in word-sized deltas, a few words each."""
    pieces = _PIECE.findall((choice.get("message") or {}).get("content") or "")
    return ["".join(pieces[start:start + _WORDS_PER_CHUNK]) for start in range(0, len(pieces), _WORDS_PER_CHUNK)]


def _usage_with_cost(cost_nanos: int) -> dict[str, Any]:
    return {**_ZERO_USAGE, "cost_usd": orjson.Fragment(format_usd(cost_nanos).encode())}


def _completion(request_id: str, created: int, model: str, choice: dict[str, Any], stream: bool,
                include_usage: bool, cost_nanos: int) -> web.Response:
    head = {"id": "cmpl-" + request_id.removeprefix("tg-"), "object": "text_completion", "created": created,
            "model": model}
    text = (choice.get("message") or {}).get("content") or ""
    finish = choice.get("finish_reason") or "stop"
    if not stream:
        body = {**head, "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
                "usage": _ZERO_USAGE}
        return web.Response(body=orjson.dumps(body), content_type="application/json")
    tail = {"usage": None} if include_usage else {}

    def chunk(piece: str, finish_reason: str | None = None) -> bytes:
        entry = {"text": piece, "index": 0, "logprobs": None, "finish_reason": finish_reason}
        return sse.sse_event({**head, "choices": [entry], **tail})

    events = [chunk(piece) for piece in _pieces(choice)] + [chunk("", finish)]
    if include_usage:
        events.append(sse.sse_event({**head, "choices": [], "usage": _usage_with_cost(cost_nanos)}))
    return _sse([*events, b"data: " + sse.DONE + b"\n\n"])


def _response(request_id: str, created: int, model: str, choice: dict[str, Any], stream: bool,
              request: dict[str, Any]) -> web.Response:
    """What the Responses API answers: the request's settings echoed, one message item, zero usage."""
    suffix = request_id.removeprefix("tg-")
    text = (choice.get("message") or {}).get("content") or ""
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    item = {"id": "msg_" + suffix, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
    final = {
        "id": "resp_" + suffix, "object": "response", "created_at": created, "status": "completed",
        "background": False, "error": None, "incomplete_details": None, "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"), "model": model, "output": [item],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"), "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0), "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"), "tools": request.get("tools", []),
        "top_p": request.get("top_p", 1.0), "truncation": request.get("truncation", "disabled"),
        "user": request.get("user"), "metadata": request.get("metadata") or {},
        "usage": {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
                  "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0},
    }
    if not stream:
        return web.Response(body=orjson.dumps(final), content_type="application/json")
    started = {**final, "status": "in_progress", "output": [], "usage": None}
    where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": started}), ("response.in_progress", {"response": started}),
        ("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress", "content": []}}),
        ("response.content_part.added", {**where, "part": {**part, "text": ""}}),
        *(("response.output_text.delta", {**where, "delta": piece, "logprobs": []}) for piece in _pieces(choice)),
        ("response.output_text.done", {**where, "text": text, "logprobs": []}),
        ("response.content_part.done", {**where, "part": part}),
        ("response.output_item.done", {"output_index": 0, "item": item}),
        ("response.completed", {"response": final}),
    ]
    return _sse([b"event: " + name.encode() + b"\n" + sse.sse_event({"type": name, "sequence_number": n, **data})
                 for n, (name, data) in enumerate(events)])


def _stream_events(completion_id: str, created: int, model: str, choice: dict[str, Any], include_usage: bool,
                   cost_nanos: int) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        event = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
        if include_usage:
            event["usage"] = None  # as OpenAI sends it on every chunk but the last
        return sse.sse_event(event)

    message = choice.get("message") or {}
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in _pieces(choice)]
    if message.get("refusal"):
        events.append(chunk({"refusal": message["refusal"]}))
    if message.get("tool_calls"):
        events.append(chunk({"tool_calls": [{**call, "index": i} for i, call in enumerate(message["tool_calls"])]}))
    events.append(chunk({}, choice.get("finish_reason") or "stop"))
    if include_usage:
        events.append(sse.sse_event({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                      "model": model, "choices": [], "usage": _usage_with_cost(cost_nanos)}))
    events.append(b"data: " + sse.DONE + b"\n\n")
    return events
