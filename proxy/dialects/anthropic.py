"""Anthropic's Messages API as a dialect: POST /v1/messages and POST /v1/messages/count_tokens.

Bodies are checked for the fields the proxy relies on (model, max_tokens, stream, the messages and
the shape of their content, system, tools): a malformed one is a 400 in Anthropic's error shape
naming the field, the way the API names it (`messages.0.content`). The upstream validates the rest.

Usage: a whole answer's `usage`; a stream's `message_start` (input, cache reads and writes exactly,
output at its start) then `message_delta` (cumulative: the final output count, and on current
versions the input counts again). A stream cut before its `message_delta` keeps the exact input and
has its output counted locally (flagged `estimated`).
"""

from typing import Any

import orjson
from aiohttp import web

from proxy.openai_usage import usage_from
from proxy.openai_wire import MAX_OUTPUT_TOKENS, RequestFacts, model_name_problem, parse_body
from proxy.accounting.tokens import ModelTokenizer
from proxy.accounting.usage import Usage
from proxy.dialects.anthropic_tokens import prompt_parts
from proxy.errors import BadRequest, ProxyError

API_VERSION = "2026-10-21"  # the current anthropic-version (API versions page, October 2026)
ROLES = ("user", "assistant")
# Anthropic's error types by HTTP status (Errors page, "HTTP errors").
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               529: "overloaded_error"}
_STOP = b'"type":"message_stop"'  # inside JSON text a quote is escaped: only the event itself has this


class MessagesDialect:
    wire = "anthropic"

    def __init__(self, endpoint: str, *, generates: bool) -> None:
        self.endpoint = endpoint
        self._generates = generates  # count_tokens counts a body: no output, no stream, free
        self.max_output_fields = ("max_tokens",) if generates else ()
        self.output_field_when_unset = "max_tokens" if generates else None

    def __repr__(self) -> str:
        return f"MessagesDialect({self.endpoint!r})"

    # ---- the request ----

    parse = staticmethod(parse_body)  # a JSON object, else a 400 saying what it is

    def facts(self, body: dict[str, Any]) -> RequestFacts:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _invalid("model", "Field required" if model is None else "Input should be a non-empty string")
        if problem := model_name_problem(model):
            raise _invalid("model", problem)
        check_messages(body)
        stream = body.get("stream") or False
        if not isinstance(stream, bool):
            raise _invalid("stream", "Input should be a valid boolean")
        if not self._generates:
            if stream:
                raise _invalid("stream", "Extra inputs are not permitted")
            return RequestFacts(model, False, True, 0)
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise _invalid("max_tokens", "Field required")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise _invalid("max_tokens", "Input should be an integer greater than or equal to 1")
        if max_tokens > MAX_OUTPUT_TOKENS:
            raise _invalid("max_tokens", f"Input should be less than or equal to {MAX_OUTPUT_TOKENS}")
        return RequestFacts(model, stream, True, max_tokens)  # Anthropic streams always carry usage

    @staticmethod
    def ask_for_stream_usage(body: dict[str, Any]) -> bool:
        return False

    @staticmethod
    def prompt_tokens(tokenizer: ModelTokenizer, body: dict[str, Any]) -> int:
        return prompt_parts(tokenizer, body).total

    @staticmethod
    def last_user_text(body: dict[str, Any]) -> str:
        for message in reversed(_messages(body)):
            if message.get("role") == "user":
                return text_of(message.get("content"))
        return ""

    @staticmethod
    def has_tools(body: dict[str, Any]) -> bool:
        return bool(body.get("tools"))

    @staticmethod
    def has_images(body: dict[str, Any]) -> bool:
        return any(_holds_image(message.get("content")) for message in _messages(body))

    @staticmethod
    def has_response_format(body: dict[str, Any]) -> bool:
        config = body.get("output_config")
        return isinstance(config, dict) and bool(config.get("format"))

    @staticmethod
    def add_instruction(body: dict[str, Any], instruction: str) -> bool:
        """At the end of the system prompt: a prefix cached before it stays cached."""
        system = body.get("system")
        if not system:
            body["system"] = instruction
        elif isinstance(system, str):
            if instruction in system:
                return False
            body["system"] = f"{system}\n\n{instruction}"
        elif isinstance(system, list):
            if instruction in text_of(system):
                return False
            system.append({"type": "text", "text": instruction})
        else:
            return False
        return True

    # ---- answers and streams ----

    def usage_of_answer(self, answer: Any) -> Usage | None:
        if not self._generates:
            return Usage()  # counting tokens is free
        return usage_from(answer.get("usage")) if isinstance(answer, dict) else None

    @staticmethod
    def answer_text(answer: Any) -> str:
        return text_of(answer.get("content"), with_tool_input=True) if isinstance(answer, dict) else ""

    @staticmethod
    def stream_usage(chunk: dict[str, Any], previous: Usage | None) -> tuple[Usage, bool] | None:
        kind = chunk.get("type")
        if kind == "message_start":
            message = chunk.get("message")
            usage = usage_from(message.get("usage")) if isinstance(message, dict) else None
            return None if usage is None else (usage, False)
        if kind == "message_delta" and isinstance(raw := chunk.get("usage"), dict):
            return merged_usage(raw, previous), True
        return None

    @staticmethod
    def stream_text(chunk: dict[str, Any]) -> str:
        if chunk.get("type") != "content_block_delta" or not isinstance(delta := chunk.get("delta"), dict):
            return ""
        text = delta.get("text", delta.get("partial_json", delta.get("thinking")))
        return text if isinstance(text, str) else ""

    @staticmethod
    def stream_ends(chunk: dict[str, Any]) -> bool:
        return chunk.get("type") == "message_stop"

    @staticmethod
    def stream_done(events: bytes) -> bool:
        return _STOP in events

    @staticmethod
    def is_usage_only_chunk(chunk: dict[str, Any]) -> bool:
        return False

    # ---- errors ----

    @staticmethod
    def error_response(err: ProxyError) -> web.Response:
        return web.Response(status=err.status, body=error_body(err.status, err.message),
                            content_type="application/json", headers=err.headers)

    @staticmethod
    def stream_error_event(message: str, code: str) -> bytes:
        """The event that ends a stream cut short, as Anthropic ends one (its SDK raises it)."""
        payload = {"type": "error", "error": {"type": "api_error", "message": f"{message} ({code})"}}
        return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"

    @staticmethod
    def read_error(body: bytes) -> tuple[str, str]:
        """(type, message) of an Anthropic error body; the body itself when it is not one."""
        try:
            error = orjson.loads(body).get("error")
            return str(error.get("type") or "api_error"), str(error.get("message") or "")
        except (orjson.JSONDecodeError, AttributeError):
            return "api_error", body[:200].decode(errors="replace")


def error_body(status: int, message: str) -> bytes:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def merged_usage(raw: dict[str, Any], previous: Usage | None) -> Usage:
    """message_delta's cumulative usage; counts it leaves out (older versions send output only) keep
    their message_start values, and so does the 5-minute/1-hour split of the cache writes."""
    usage = usage_from(raw) or Usage()
    if previous is None:
        return usage
    if "input_tokens" not in raw:
        usage.prompt_tokens = previous.prompt_tokens
        usage.cached_prompt_tokens, usage.cache_write_tokens = previous.cached_prompt_tokens, previous.cache_write_tokens
    if "cache_creation" not in raw:
        usage.cache_write_1h_tokens = min(previous.cache_write_1h_tokens, usage.cache_write_tokens)
    if not usage.reasoning_tokens:
        usage.reasoning_tokens = min(previous.reasoning_tokens, usage.completion_tokens)
    return usage


def check_messages(body: dict[str, Any]) -> None:
    """The structure counting, caching and translating rely on; raises a 400 naming the field."""
    messages = body.get("messages")
    if messages is None:
        raise _invalid("messages", "Field required")
    if not isinstance(messages, list):
        raise _invalid("messages", "Input should be a valid list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid(f"messages.{i}", "Input should be a valid dictionary")
        if message.get("role") not in ROLES:
            raise _invalid(f"messages.{i}.role", "Input should be 'user' or 'assistant'")
        _check_content(message.get("content"), f"messages.{i}.content")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        _check_blocks(system, "system")
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(tool, dict) for tool in tools)):
        raise _invalid("tools", "Input should be a valid list of tool definitions")


def _check_content(content: Any, field: str) -> None:
    if isinstance(content, str):
        return
    if content is None:
        raise _invalid(field, "Field required")
    _check_blocks(content, field)


def _check_blocks(blocks: Any, field: str) -> None:
    if not isinstance(blocks, list):
        raise _invalid(field, "Input should be a valid string or a list of content blocks")
    for j, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _invalid(f"{field}.{j}", "Input should be a content block with a 'type'")


def _invalid(field: str, problem: str) -> BadRequest:
    return BadRequest(f"{field}: {problem}", param=field)


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def text_of(content: Any, *, with_tool_input: bool = False) -> str:
    """The text of a content string or of its text blocks (and tool inputs, to count an answer)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif with_tool_input and block.get("type") == "tool_use":
            parts.append(str(block.get("name") or "") + orjson.dumps(block.get("input")).decode())
    return " ".join(parts) if not with_tool_input else "".join(parts)


def _holds_image(content: Any) -> bool:
    if not isinstance(content, list):
        return False
    return any(isinstance(block, dict) and (block.get("type") == "image" or (
        block.get("type") == "tool_result" and _holds_image(block.get("content")))) for block in content)


MESSAGES = MessagesDialect("messages", generates=True)
COUNT_TOKENS = MessagesDialect("count_tokens", generates=False)
