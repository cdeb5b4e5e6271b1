"""An OpenAI chat answer as an Anthropic message, whole or streamed (an Anthropic client served by OpenAI).

The message's content becomes a text block, its tool_calls tool_use blocks (arguments parsed into
the input object); finish reasons map to stop reasons; usage is reported Anthropic's way (input
without the cached part, cache reads apart). A stream's chunks become Anthropic's event sequence:
message_start, each block opened, its deltas, closed, message_delta with the stop reason and the
whole usage (OpenAI reports it only at the end, so message_start says 0 input tokens), message_stop.
"""

import time
from typing import Any

import orjson

from proxy import sse
from proxy.accounting.usage import Usage
from proxy.dialects.openai import CHAT
from proxy.dialects.translated_stream import TranslatedStream

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}


def anthropic_usage(usage: Usage) -> dict[str, int]:
    return {
        "input_tokens": usage.prompt_tokens - usage.cached_prompt_tokens - usage.cache_write_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_prompt_tokens,
        "output_tokens": usage.completion_tokens,
    }


def message(completion: dict[str, Any]) -> dict[str, Any]:
    choice = completion["choices"][0]
    said = choice["message"]
    content: list[dict[str, Any]] = []
    if said.get("content"):
        content.append({"type": "text", "text": said["content"]})
    for call in said.get("tool_calls") or ():
        function = call["function"]
        content.append({"type": "tool_use", "id": call["id"], "name": function["name"],
                        "input": _object(orjson.loads(function.get("arguments") or "{}"))})
    return {
        "id": completion["id"], "type": "message", "role": "assistant", "model": completion["model"],
        "content": content, "stop_reason": STOP_REASONS.get(choice.get("finish_reason"), "end_turn"),
        "stop_sequence": None, "usage": anthropic_usage(CHAT.usage_of_answer(completion) or Usage()),
    }


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("tool arguments are not a JSON object")
    return value


class MessagesStream(TranslatedStream):
    """OpenAI chat chunks in, Anthropic events out."""

    def __init__(self) -> None:
        super().__init__()
        self._started = False
        self._open: tuple[str, int] | None = None  # the open block: ("text", -1) or ("tool", call index)
        self._blocks = 0
        self._stop_reason = "end_turn"

    def _translate(self, data: bytes | None) -> list[bytes]:
        if data == sse.DONE:
            return self._finish()
        chunk = sse.data_object(data)
        if chunk is None:
            return []
        if isinstance(chunk.get("error"), dict):
            self.errored = True
            error = chunk["error"]
            return [_event("error", {"error": {"type": "api_error", "message": str(error.get("message"))}})]
        out = [] if self._started else [self._start(chunk)]
        reported = CHAT.stream_usage(chunk, None)
        if reported is not None:
            self.usage = self.partial_usage = reported[0]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out += self._text(delta["content"])
            for call in delta.get("tool_calls") or ():
                out += self._tool(call)
            if choice.get("finish_reason"):
                self._stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
                out += self._close()
        return out

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self._started = True
        return _event("message_start", {"message": {
            "id": chunk.get("id"), "type": "message", "role": "assistant", "model": chunk.get("model"), "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}})

    def _text(self, text: str) -> list[bytes]:
        out = [] if self._open == ("text", -1) else self._open_block(("text", -1), {"type": "text", "text": ""})
        if self.first_text_at is None:
            self.first_text_at = time.perf_counter()
        self._texts.append(text)
        return [*out, _event("content_block_delta", {"index": self._blocks - 1,
                                                     "delta": {"type": "text_delta", "text": text}})]

    def _tool(self, call: dict[str, Any]) -> list[bytes]:
        key = ("tool", call.get("index", 0))
        function = call.get("function") or {}
        out = []
        if self._open != key:
            block = {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": {}}
            self._texts.append(function.get("name") or "")
            out = self._open_block(key, block)
        arguments = function.get("arguments")
        if arguments:
            self._texts.append(arguments)
            out.append(_event("content_block_delta", {"index": self._blocks - 1,
                                                      "delta": {"type": "input_json_delta", "partial_json": arguments}}))
        return out

    def _open_block(self, key: tuple[str, int], block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self._open = key
        self._blocks += 1
        return [*out, _event("content_block_start", {"index": self._blocks - 1, "content_block": block})]

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [_event("content_block_stop", {"index": self._blocks - 1})]

    def _finish(self) -> list[bytes]:
        self.done = True
        usage = anthropic_usage(self.usage or Usage())
        return [*self._close(),
                _event("message_delta", {"delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
                                         "usage": usage}),
                _event("message_stop", {})]


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **payload}) + b"\n\n"
