"""A stored answer served like the real thing: a chat completion, or its SSE stream when asked.

The body's usage is zero: nothing was generated for this request. What the lookup cost (its
embedding) is in the x-thriftgate-cost-usd header and, for a stream that asked for usage, in
`usage.cost_usd`, as on any answer.
"""

import re
import time
from typing import Any

import orjson
from aiohttp import web

from proxy import openai_wire as wire
from proxy.accounting.money import format_usd

_PIECE = re.compile(r"\S+\s*|\s+")  # words with their trailing space: a stream of word-sized deltas
_WORDS_PER_CHUNK = 4
_ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def answer(*, request_id: str, model: str, choice: dict[str, Any], stream: bool, include_usage: bool,
           cost_nanos: int) -> web.Response:
    completion_id = "chatcmpl-" + request_id.removeprefix("tg-")
    created = int(time.time())
    if not stream:
        body = {"id": completion_id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{**choice, "index": 0}], "usage": _ZERO_USAGE}
        return web.Response(body=orjson.dumps(body), content_type="application/json")
    events = _stream_events(completion_id, created, model, choice, include_usage, cost_nanos)
    return web.Response(body=b"".join(events), content_type="text/event-stream",
                        headers={"Cache-Control": "no-cache"})


def _stream_events(completion_id: str, created: int, model: str, choice: dict[str, Any], include_usage: bool,
                   cost_nanos: int) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        event = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
        if include_usage:
            event["usage"] = None  # as OpenAI sends it on every chunk but the last
        return wire.sse_event(event)

    message = choice.get("message") or {}
    events = [chunk({"role": "assistant", "content": ""})]
    pieces = _PIECE.findall(message.get("content") or "")
    for start in range(0, len(pieces), _WORDS_PER_CHUNK):
        events.append(chunk({"content": "".join(pieces[start:start + _WORDS_PER_CHUNK])}))
    if message.get("refusal"):
        events.append(chunk({"refusal": message["refusal"]}))
    if message.get("tool_calls"):
        events.append(chunk({"tool_calls": [{**call, "index": i} for i, call in enumerate(message["tool_calls"])]}))
    events.append(chunk({}, choice.get("finish_reason") or "stop"))
    if include_usage:
        usage = {**_ZERO_USAGE, "cost_usd": orjson.Fragment(format_usd(cost_nanos).encode())}
        events.append(wire.sse_event({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                      "model": model, "choices": [], "usage": usage}))
    events.append(b"data: " + wire.DONE + b"\n\n")
    return events
