"""An Anthropic answer as an OpenAI chat completion, whole or streamed (an OpenAI client served by Claude).

Text blocks become the message's content, tool_use blocks its tool_calls (input as JSON arguments),
thinking stays hidden (billed as reasoning tokens, as OpenAI bills its own). Stop reasons map to
finish reasons; usage is the normalised one (cache reads as cached_tokens, writes as
cache_write_tokens, thinking as reasoning_tokens). A stream's events become chat chunks as they
arrive; the usage chunk (with cost_usd) goes out only to a client that asked for it.
"""

import time
from collections.abc import Callable
from typing import Any

import orjson

from proxy import sse
from proxy.accounting.money import format_usd
from proxy.accounting.usage import Usage
from proxy.dialects.anthropic import MESSAGES
from proxy.dialects.translated_stream import TranslatedStream

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
                  "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter"}
_DONE = b"data: [DONE]\n\n"


def chat_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens,
                                  "cache_write_tokens": usage.cache_write_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def chat_completion(message: dict[str, Any]) -> dict[str, Any]:
    text, calls = [], []
    for block in message.get("content") or ():
        if block.get("type") == "text":
            text.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": arguments}})
    said: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        said["tool_calls"] = calls
    said["refusal"] = None
    completion = {
        "id": message.get("id"), "object": "chat.completion", "created": int(time.time()), "model": message.get("model"),
        "choices": [{"index": 0, "message": said, "logprobs": None,
                     "finish_reason": FINISH_REASONS.get(message.get("stop_reason"), "stop")}],
    }
    usage = MESSAGES.usage_of_answer(message)
    if usage is not None:
        completion["usage"] = chat_usage(usage)
    return completion


class ChatStream(TranslatedStream):
    """Anthropic's SSE events in, chat chunks out."""

    def __init__(self, *, include_usage: bool, price: Callable[[Usage], int | None] | None) -> None:
        super().__init__()
        self._include_usage = include_usage
        self._price = price
        self._head: dict[str, Any] = {}
        self._tool_index: dict[int, int] = {}  # content block index -> tool call index

    def _translate(self, data: bytes | None) -> list[bytes]:
        chunk = sse.data_object(data)
        if chunk is None:
            return []
        kind = chunk.get("type")
        reported = MESSAGES.stream_usage(chunk, self.partial_usage)
        if reported is not None:
            self.partial_usage = reported[0]
        if kind == "message_start":
            message = chunk.get("message") or {}
            self._head = {"id": message.get("id"), "object": "chat.completion.chunk", "created": int(time.time()),
                          "model": message.get("model")}
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(chunk)
        if kind == "content_block_delta":
            return self._delta(chunk)
        if kind == "message_delta":
            self.usage = self.partial_usage
            finish = FINISH_REASONS.get((chunk.get("delta") or {}).get("stop_reason"), "stop")
            return [self._chunk({}, finish)]
        if kind == "message_stop":
            self.done = True
            return [*self._usage_chunk(), _DONE]
        if kind == "error":
            self.errored = True
            error = chunk.get("error") or {}
            return [sse.sse_event({"error": {"message": error.get("message"), "type": error.get("type"),
                                              "param": None, "code": error.get("type")}})]
        return []  # ping, content_block_stop

    def _block_start(self, chunk: dict[str, Any]) -> list[bytes]:
        block = chunk.get("content_block") or {}
        if block.get("type") == "tool_use":
            index = self._tool_index[chunk.get("index")] = len(self._tool_index)
            call = {"index": index, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""}}
            self._texts.append(block.get("name") or "")
            return [self._chunk({"tool_calls": [call]})]
        if block.get("type") == "text" and block.get("text"):
            return [self._text(block["text"])]
        return []

    def _delta(self, chunk: dict[str, Any]) -> list[bytes]:
        delta = chunk.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self._text(delta["text"])]
        if delta.get("type") == "input_json_delta" and chunk.get("index") in self._tool_index:
            arguments = delta.get("partial_json") or ""
            self._texts.append(arguments)
            call = {"index": self._tool_index[chunk["index"]], "function": {"arguments": arguments}}
            return [self._chunk({"tool_calls": [call]})]
        return []  # thinking stays hidden; signatures and citations have no chat counterpart

    def _text(self, text: str) -> bytes:
        if self.first_text_at is None:
            self.first_text_at = time.perf_counter()
        self._texts.append(text)
        return self._chunk({"content": text})

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse.sse_event({**self._head, "choices": [choice], **({"usage": None} if self._include_usage else {})})

    def _usage_chunk(self) -> list[bytes]:
        if not self._include_usage or self.usage is None:
            return []
        usage = chat_usage(self.usage)
        nanos = self._price(self.usage) if self._price else None
        if nanos is not None:
            usage["cost_usd"] = orjson.Fragment(format_usd(nanos).encode())
        return [sse.sse_event({**self._head, "choices": [], "usage": usage})]
