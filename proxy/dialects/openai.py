"""OpenAI's dialect, one per endpoint: chat, completions, responses, embeddings.

The wire format itself is proxy/openai_wire.py (request bodies), proxy/openai_usage.py (usage objects) and
proxy/sse.py (SSE events); this module binds it to an endpoint and adds what policies change in a body (an
instruction, an output limit).
"""

from typing import Any

import orjson
from aiohttp import web

from proxy import openai_wire as wire
from proxy import sse
from proxy.openai_usage import (
    is_usage_only_chunk, output_text_of_response, stream_chunk_usage, stream_delta_text, usage_of_response,
)
from proxy.openai_wire import RequestFacts
from proxy.accounting.tokens import ModelTokenizer
from proxy.accounting.usage import Usage
from proxy.errors import ProxyError

# Reasoning-era chat models refuse `max_tokens`; `max_completion_tokens` is accepted by all.
_FIELD_WHEN_UNSET = {"chat": "max_completion_tokens", "completions": "max_tokens", "responses": "max_output_tokens"}


class OpenAIDialect:
    wire = "openai"

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.max_output_fields = wire.MAX_OUTPUT_FIELDS[endpoint]
        self.output_field_when_unset = _FIELD_WHEN_UNSET.get(endpoint)
        self._count = _COUNTERS[endpoint]

    def __repr__(self) -> str:
        return f"OpenAIDialect({self.endpoint!r})"

    # ---- the request ----

    @staticmethod
    def parse(raw: bytes) -> dict[str, Any]:
        return wire.parse_body(raw)

    def facts(self, body: dict[str, Any]) -> RequestFacts:
        return wire.request_facts(self.endpoint, body)

    def ask_for_stream_usage(self, body: dict[str, Any]) -> bool:
        """Chat and completions streams report usage only when asked (responses streams always do)."""
        if self.endpoint == "responses":
            return False
        wire.ask_for_stream_usage(body)
        return True

    def prompt_tokens(self, tokenizer: ModelTokenizer, body: dict[str, Any]) -> int:
        return self._count(tokenizer, body)

    def last_user_text(self, body: dict[str, Any]) -> str:
        return wire.last_user_text(self.endpoint, body)

    def has_tools(self, body: dict[str, Any]) -> bool:
        return wire.has_tools(self.endpoint, body)

    def has_images(self, body: dict[str, Any]) -> bool:
        return wire.has_images(self.endpoint, body)

    def has_response_format(self, body: dict[str, Any]) -> bool:
        return wire.has_response_format(self.endpoint, body)

    def add_instruction(self, body: dict[str, Any], instruction: str) -> bool:
        """Chat: a system message after the leading ones; responses: the instructions; completions: the prompt."""
        if self.endpoint == "chat":
            return _into_messages(body, instruction)
        if self.endpoint == "responses":
            return _into_instructions(body, instruction)
        if self.endpoint == "completions":
            return _into_prompt(body, instruction)
        return False

    # ---- answers and streams ----

    def usage_of_answer(self, answer: Any) -> Usage | None:
        return usage_of_response(self.endpoint, answer)

    def answer_text(self, answer: Any) -> str:
        return output_text_of_response(self.endpoint, answer)

    def stream_usage(self, chunk: dict[str, Any], previous: Usage | None) -> tuple[Usage, bool] | None:
        usage = stream_chunk_usage(self.endpoint, chunk)
        return None if usage is None else (usage, True)

    def stream_text(self, chunk: dict[str, Any]) -> str:
        return stream_delta_text(self.endpoint, chunk)

    def stream_ends(self, chunk: dict[str, Any]) -> bool:
        return self.endpoint == "responses" and chunk.get("type") in _RESPONSES_ENDS

    @staticmethod
    def stream_done(events: bytes) -> bool:
        return events.startswith(b"data: [DONE]") or b"\n\ndata: [DONE]" in events

    def is_usage_only_chunk(self, chunk: dict[str, Any]) -> bool:
        return self.endpoint != "responses" and is_usage_only_chunk(chunk)

    # ---- errors ----

    @staticmethod
    def error_response(err: ProxyError) -> web.Response:
        return err.response()

    def stream_error_event(self, message: str, code: str) -> bytes:
        """The event that ends a stream cut short, as OpenAI ends one: the SDKs raise it as an APIError."""
        if self.endpoint == "responses":
            return b"event: error\n" + sse.sse_event({"type": "error", "code": code, "message": message, "param": None})
        return sse.sse_event({"error": {"message": message, "type": "server_error", "param": None, "code": code}})

    @staticmethod
    def read_error(body: bytes) -> tuple[str, str]:
        """(type, message) of an OpenAI error body; the body itself when it is not one."""
        try:
            error = orjson.loads(body).get("error")
            return str(error.get("code") or error.get("type") or "server_error"), str(error.get("message") or "")
        except (orjson.JSONDecodeError, AttributeError):
            return "server_error", body[:200].decode(errors="replace")


# The Responses API's last events: completed, cut at max_output_tokens, or failed upstream.
_RESPONSES_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})

# The prompt's tokens, by endpoint (accounting/tokens.py knows each format's framing).
_COUNTERS = {
    "chat": lambda tokens, body: tokens.chat(body.get("messages") or [], body.get("tools"), body.get("functions")),
    "completions": lambda tokens, body: tokens.prompt(body.get("prompt") or ""),
    "embeddings": lambda tokens, body: tokens.embedding_input(body.get("input") or ""),
    "responses": lambda tokens, body: tokens.responses_input(body.get("input") or "", body.get("instructions"),
                                                             body.get("tools")),
}


def _into_messages(body: dict[str, Any], instruction: str) -> bool:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False
    leading = 0
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer"):
            break
        if instruction in _text(message.get("content")):
            return False  # already asked (by the client, or by this proxy upstream of us)
        leading += 1
    messages.insert(leading, {"role": "system", "content": instruction})
    return True


def _into_instructions(body: dict[str, Any], instruction: str) -> bool:
    instructions = body.get("instructions")
    if not instructions:
        body["instructions"] = instruction
        return True
    if not isinstance(instructions, str) or instruction in instructions:
        return False
    body["instructions"] = f"{instructions}\n\n{instruction}"
    return True


def _into_prompt(body: dict[str, Any], instruction: str) -> bool:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or prompt.startswith(instruction):
        return False
    body["prompt"] = f"{instruction}\n\n{prompt}"
    return True


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


CHAT, COMPLETIONS, RESPONSES, EMBEDDINGS = (OpenAIDialect(e) for e in ("chat", "completions", "responses", "embeddings"))
