"""The fake Anthropic provider: POST /v1/messages (whole and streamed), /v1/messages/count_tokens.

Faithful where a proxy can tell: the key (x-api-key, or Authorization: Bearer as SDK 2.x sends it;
x-api-key wins), the required anthropic-version (2026-10-21 refuses temperature, top_p and top_k),
max_tokens, messages and their roles, Anthropic's error bodies and types (401 authentication_error,
404 not_found_error, 429 rate_limit_error with retry-after, 500 api_error, 529 overloaded_error),
the event sequence of a stream, usage with cache reads and writes (a working prompt cache:
tests/fake/prompt_cache.py), request-id and anthropic-ratelimit-* headers. Deterministic replies from
tests/fake/content.py. The x-fake-* switches of the OpenAI fake work here too (tests/fake_upstream.py),
and x-fake-fault: stream-error ends a stream halfway with an overloaded_error event.
"""

import asyncio
import hashlib
import time
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from tests.fake import anthropic_wire as wire
from tests.fake.call import STATE, Call, Knobs, UpstreamState, hang_up, send_stream
from tests.fake.content import TEXT, OutputShape
from tests.fake.endpoints import json_shape
from tests.fake.gate import GARBAGE_BODY, TIMEOUT_FAULT_SECONDS, fault_due, parse_body, record_requests
from tests.fake.prompt_cache import CacheUse, PromptCache
from tests.fake.tokens import text_of

FAKE_ANTHROPIC_KEY = "sk-ant-fake-upstream-key"
MODELS = frozenset({"claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "claude-haiku-4-5", "claude-haiku-4-5-20251001",
                    "claude-opus-4-5", "claude-opus-4-8", "claude-sonnet-5", "claude-haiku-5-5"})
CACHE = web.AppKey("fake_anthropic_cache", PromptCache)
ERRORS = {"400": (400, "invalid_request_error", "messages.0.content: Input should be a valid list"),
          "429": (429, "rate_limit_error", "This request would exceed your organization's rate limit of 50 "
                                           "requests per minute. For details, refer to: "
                                           "https://docs.claude.com/en/api/rate-limits."),
          "500": (500, "api_error", "Internal server error"),
          "503": (529, "overloaded_error", "Overloaded"),
          "529": (529, "overloaded_error", "Overloaded")}
FAULTS = frozenset({*ERRORS, "timeout", "cut", "garbage", "stream-error"})


def make_fake_anthropic_app(*, seed: int = 0, api_keys: tuple[str, ...] = (FAKE_ANTHROPIC_KEY,),
                            record: bool = True) -> web.Application:
    app = web.Application(middlewares=[record_requests, _invalid_urls])
    app[STATE] = UpstreamState(seed=seed, models=MODELS, api_keys=frozenset(api_keys), recorded=[] if record else None)
    app[CACHE] = PromptCache()
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    return app


@web.middleware
async def _invalid_urls(request: web.Request, handler) -> web.StreamResponse:
    """A path or method the API does not have: Anthropic's 404, not aiohttp's plain text; a body whose fields have
    the wrong types: its 400."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        body = wire.error_body("not_found_error", "Not Found", "req_011notfound")
        return web.Response(status=404, body=body, content_type="application/json")
    except (TypeError, AttributeError, KeyError, IndexError, ValueError, OverflowError) as exc:
        # Anthropic validates every field's type before it generates: a malformed request is its 400, not a 500.
        body = wire.error_body("invalid_request_error", f"{type(exc).__name__}: {exc}"[:300], "req_011invalid")
        return web.Response(status=400, body=body, content_type="application/json")


async def messages(request: web.Request) -> web.StreamResponse:
    call, rejection = await _admitted(request, counting=False)
    if rejection is not None:
        return rejection
    body, model = call.body, call.model
    shape, stop_for_tools = _shape(body, call.knobs)
    budget = body["max_tokens"]
    [reply] = call.replies(_last_user_text(body), concise="concise" in text_of(body.get("system")).lower(),
                           shape=shape, budget=budget)
    stop_reason = {"length": "max_tokens"}.get(reply.finish_reason, stop_for_tools if reply.tool_name else "end_turn")
    reply, stop_reason, stop_sequence = _stopped(reply, body.get("stop_sequences"), stop_reason)
    thinking = _thinking(body, reply.text)
    input_total, cache = request.app[CACHE].use(body, model)
    cache = _forced(cache, call.knobs, input_total)
    thinking_tokens = len(thinking.split()) if thinking else 0
    counts = wire.usage(input_total, cache, reply.completion_tokens + thinking_tokens, thinking_tokens)
    final = wire.message(wire.message_id(call.request_id), model, wire.content_blocks(reply, thinking), stop_reason,
                         stop_sequence, counts)
    if body.get("stream"):
        events = wire.stream_events(final, reply, thinking)
        if call.fault == "stream-error":
            events = events[: len(events) // 2] + [wire.event("error", {"error": {
                "type": "overloaded_error", "message": "Overloaded"}})]
        return await send_stream(call, events)
    payload = orjson.dumps(final)
    if call.fault == "cut":
        response = web.StreamResponse(headers={**call.headers(), "Content-Type": "application/json"})
        response.content_length = len(payload)
        await response.prepare(call.request)
        await response.write(payload[: len(payload) // 2])
        return hang_up(call, response)
    return web.Response(body=payload, content_type="application/json", headers=call.headers())


async def count_tokens(request: web.Request) -> web.StreamResponse:
    call, rejection = await _admitted(request, counting=True)
    if rejection is not None:
        return rejection
    input_total, _ = PromptCache().use({**call.body, "cache_control": None}, call.model)
    return web.Response(body=orjson.dumps({"input_tokens": input_total}), content_type="application/json",
                        headers=call.headers())


class AnthropicCall(Call):
    __slots__ = ()

    def headers(self) -> dict[str, str]:
        return wire.headers(self.request_id, self.started)


async def _admitted(request: web.Request, *, counting: bool) -> tuple[AnthropicCall, web.Response | None]:
    """Anthropic's checks in its order (key, version, body, model), then the test's latency and faults."""
    state = request.app[STATE]
    started = time.perf_counter()
    raw = await request.read()
    parsed = parse_body(raw)
    body = parsed if isinstance(parsed, dict) else {}
    fault = request.headers.get("x-fake-fault")
    if fault is not None and fault not in FAULTS:  # a typo must not pass for a request that went well
        raise ValueError(f"x-fake-fault: {fault!r} is none of {sorted(FAULTS)}")
    knobs = replace(Knobs.of({k: v for k, v in request.headers.items() if k.lower() != "x-fake-fault"}, ""),
                    fault=fault)
    if knobs.latency_s:
        await asyncio.sleep(knobs.latency_s)
    state.served += 1
    request_id = "req_011" + hashlib.blake2b(f"{state.seed}:{state.served}".encode(), digest_size=12).hexdigest()
    call = AnthropicCall(request, state, body, knobs, request_id, started)
    problem = _auth_error(request, state) or _version_error(request, body) or _body_error(parsed, counting)
    if problem is None and call.model not in state.models:
        problem = (404, "not_found_error", f"model: {call.model}")
    if problem is not None:
        return call, _error(call, *problem)
    call.fault = fault_due(call, raw) if fault else None
    if call.fault in ERRORS:
        extra = {"retry-after": knobs.retry_after} if call.fault == "429" else {}
        return call, _error(call, *ERRORS[call.fault], extra)
    if call.fault == "timeout":
        await asyncio.sleep(TIMEOUT_FAULT_SECONDS)
    if call.fault == "garbage":
        return call, web.Response(body=GARBAGE_BODY, content_type="application/json", headers=call.headers())
    return call, None


def _error(call: Call, status: int, kind: str, message: str, extra: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=wire.error_body(kind, message, call.request_id),
                        content_type="application/json", headers={**call.headers(), **(extra or {})})


def _auth_error(request: web.Request, state: UpstreamState) -> tuple[int, str, str] | None:
    key = request.headers.get("x-api-key")
    if key is None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        key = token if scheme == "Bearer" and token else None
    if key is None:
        return 401, "authentication_error", "x-api-key header is required"
    return None if key in state.api_keys else (401, "authentication_error", "invalid x-api-key")


def _version_error(request: web.Request, body: dict[str, Any]) -> tuple[int, str, str] | None:
    version = request.headers.get("anthropic-version")
    if version is None:
        return 400, "invalid_request_error", "anthropic-version: header is required"
    if version not in wire.API_VERSIONS:
        return 400, "invalid_request_error", f"anthropic-version: invalid version {version!r}"
    if version >= wire.SAMPLING_REMOVED_IN:
        sampling = next((f for f in ("temperature", "top_p", "top_k") if f in body), None)
        if sampling:
            return 400, "invalid_request_error", f"{sampling}: Extra inputs are not permitted"
    return None


def _body_error(body: Any, counting: bool) -> tuple[int, str, str] | None:
    if not isinstance(body, dict):
        return 400, "invalid_request_error", "The request body is not valid JSON."
    for field in ("model", "messages") if counting else ("model", "max_tokens", "messages"):
        if field not in body:
            return 400, "invalid_request_error", f"{field}: Field required"
    if not isinstance(body["messages"], list):
        return 400, "invalid_request_error", "messages: Input should be a valid list"
    for i, message in enumerate(body["messages"]):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return 400, "invalid_request_error", f"messages.{i}.role: Input should be 'user' or 'assistant'"
    return None


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body["messages"]):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # the text a user typed; tool results answer a call, they ask nothing
                return " ".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
            return text_of(content)
    return ""


def _shape(body: dict[str, Any], knobs: Knobs) -> tuple[OutputShape, str]:
    """A tool call when tool_choice asks for one (a named tool, or "any") or x-fake-tool-call does;
    else JSON for output_config.format, else text. A forced call stops with "tool_use" too."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "input_schema" in t]
    choice = body.get("tool_choice") or {}
    if tools and (choice.get("type") in ("tool", "any") or (knobs.tool_call and choice.get("type") != "none")):
        tool = next((t for t in tools if t["name"] == choice.get("name")), tools[0])
        return OutputShape("tool", tool["input_schema"], tool["name"]), "tool_use"
    output_format = (body.get("output_config") or {}).get("format")
    return (json_shape(output_format) if output_format else TEXT), "end_turn"


def _stopped(reply, stop_sequences: Any, stop_reason: str):
    """Cut the reply at the first stop sequence it would contain (the sequence itself is not returned)."""
    if not stop_sequences or reply.tool_name:
        return reply, stop_reason, None
    text, pieces = "", []
    for piece in reply.pieces:
        for sequence in stop_sequences:
            if sequence in text + piece:
                return type(reply)(tuple(pieces), "stop", 0), "stop_sequence", sequence
        pieces.append(piece)
        text += piece
    return reply, stop_reason, None


def _thinking(body: dict[str, Any], reply_text: str) -> str | None:
    thinking = body.get("thinking") or {}
    if thinking.get("type") not in ("enabled", "adaptive"):
        return None
    return "Let me think about " + " ".join(reply_text.split()[:5])


def _forced(cache: CacheUse, knobs: Knobs, input_total: int) -> CacheUse:
    """x-fake-cached-tokens / x-fake-cache-write-tokens (and x-fake-cache-write-1h-tokens, their 1-hour part)
    replace what the simulated cache did, for tests that price given counts."""
    if not (knobs.cached_tokens or knobs.cache_write_tokens):
        return cache
    read = min(knobs.cached_tokens, input_total)
    written = min(knobs.cache_write_tokens, input_total - read)
    written_1h = min(knobs.cache_write_1h_tokens, written)
    return CacheUse(read, written - written_1h, written_1h)
