"""One request on its way through the fake: its switches, its ids and headers, and how its answer is sent."""

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.fake import wire
from tests.fake.content import Generated, OutputShape, generate, reply_length
from tests.fake.tokens import token_pieces

# Faults, by header `x-fake-fault: NAME` or by model `fake-NAME`.
ERROR_FAULTS = frozenset({"400", "429", "500", "503"})
FAULTS = frozenset({*ERROR_FAULTS, "timeout", "cut", "no-usage", "garbage"})
# Models whose answer is a poor one, whatever was asked: what a cascade must catch and escalate.
CANNED_REPLIES = {
    "fake-empty": "",
    "fake-refusal": "I'm sorry, but I can't help with that.",
    "fake-badjson": "{'answer': not json",
}
# A lookup verifier's prompt (two questions) with one of these markers in it is answered with the word:
# deterministic verdicts for tests, whatever the model.
VERDICT_MARKERS = {"[same]": "yes", "[different]": "no", "[unsure]": "maybe"}

OPENAI_HEADERS = {
    "openai-version": "2020-10-01",
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-limit-tokens": "30000000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "29999000",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "2ms",
}


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: CIMultiDict[str]  # a dict whose names match in any case
    body: Any  # the parsed JSON; None when there was none or it was not JSON


@dataclass(slots=True)
class UpstreamState:
    seed: int
    models: frozenset[str]
    api_keys: frozenset[str]
    recorded: list[RecordedRequest] | None
    fault_hits: Counter[tuple[str, str]] = field(default_factory=Counter)
    served: int = 0


STATE = web.AppKey("fake_upstream_state", UpstreamState)


def _seconds(headers: Mapping[str, str], millis_header: str) -> float:
    return int(headers.get(millis_header, 0)) / 1000


@dataclass(frozen=True, slots=True)
class Knobs:
    """The switches a test sets with x-fake-* headers."""

    words: int | None  # x-fake-words: reply length in words
    latency_s: float  # x-fake-latency-ms: wait before the response headers
    chunk_delay_s: float  # x-fake-chunk-delay-ms: wait between stream events
    fault: str | None  # x-fake-fault, or the model fake-NAME
    cached_tokens: int  # x-fake-cached-tokens
    cache_write_tokens: int  # x-fake-cache-write-tokens
    cache_write_1h_tokens: int  # x-fake-cache-write-1h-tokens: the part of them written for an hour (Anthropic)
    anthropic_usage: bool  # x-fake-anthropic-usage: 1
    tool_call: bool  # x-fake-tool-call: 1
    retry_after: str  # x-fake-retry-after: the 429's Retry-After, "2" by default

    @classmethod
    def of(cls, headers: Mapping[str, str], model: str) -> "Knobs":
        fault = headers.get("x-fake-fault")
        if fault is not None and fault not in FAULTS:  # a typo must not pass for a request that went well
            raise ValueError(f"x-fake-fault: {fault!r} is none of {sorted(FAULTS)}")
        fault = fault or (model.removeprefix("fake-") if model.startswith("fake-") else None)
        return cls(
            words=int(headers["x-fake-words"]) if "x-fake-words" in headers else None,
            latency_s=_seconds(headers, "x-fake-latency-ms"),
            chunk_delay_s=_seconds(headers, "x-fake-chunk-delay-ms"),
            fault=fault if fault in FAULTS else None,
            cached_tokens=int(headers.get("x-fake-cached-tokens", 0)),
            cache_write_tokens=int(headers.get("x-fake-cache-write-tokens", 0)),
            cache_write_1h_tokens=int(headers.get("x-fake-cache-write-1h-tokens", 0)),
            anthropic_usage=headers.get("x-fake-anthropic-usage") == "1",
            tool_call=headers.get("x-fake-tool-call") == "1",
            retry_after=headers.get("x-fake-retry-after", "2"),
        )


@dataclass(slots=True)
class Call:
    request: web.Request
    state: UpstreamState
    body: dict[str, Any]
    knobs: Knobs
    request_id: str
    started: float
    fault: str | None = None  # the knob's fault, unless x-fake-fault-times has used it up

    @property
    def model(self) -> str:
        return self.body.get("model", "")

    @property
    def streams_usage(self) -> bool:
        return bool((self.body.get("stream_options") or {}).get("include_usage")) and self.fault != "no-usage"

    def object_id(self, prefix: str) -> str:
        return prefix + hashlib.sha1(self.request_id.encode()).hexdigest()[:29]

    def headers(self) -> dict[str, str]:
        headers = {**OPENAI_HEADERS, "x-request-id": self.request_id}
        headers["openai-processing-ms"] = str(int((time.perf_counter() - self.started) * 1000))
        if "x-client-request-id" in self.request.headers:  # OpenAI echoes the client's own id back
            headers["x-client-request-id"] = self.request.headers["x-client-request-id"]
        return headers

    def replies(
        self, prompt: str, *, concise: bool, shape: OutputShape, budget: int | None, n: int = 1
    ) -> list[Generated]:
        length = reply_length(self.knobs.words, concise)
        seed, model = self.state.seed, self.model
        verdict = next((word for marker, word in VERDICT_MARKERS.items() if marker in prompt), None)
        if model in CANNED_REPLIES or verdict is not None:
            pieces = token_pieces(verdict or CANNED_REPLIES[model], model)
            return [Generated(pieces, "stop", 0) for _ in range(n)]
        return [
            generate(seed=seed, prompt=prompt, index=i, length=length, shape=shape, model=model, budget=budget)
            for i in range(n)
        ]

    def counts(self, prompt_tokens: int, choices: list[Generated]) -> wire.Counts:
        return wire.Counts.of(prompt_tokens, choices, self.knobs.cached_tokens, self.knobs.cache_write_tokens)


def error_response(call: Call, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> web.Response:
    headers = {**call.headers(), **(headers or {})}
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


async def send_json(call: Call, payload: dict[str, Any]) -> web.StreamResponse:
    body = orjson.dumps(payload)
    if call.fault != "cut":
        return web.Response(body=body, content_type="application/json", headers=call.headers())
    response = web.StreamResponse(headers={**call.headers(), "Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(call.request)
    await response.write(body[: len(body) // 2])
    return hang_up(call, response)


async def send_stream(call: Call, events: list[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(headers={**call.headers(), "Content-Type": "text/event-stream; charset=utf-8"})
    await response.prepare(call.request)
    cut = call.fault == "cut"
    for n, event in enumerate(events[: len(events) // 2] if cut else events):  # half: before any finish
        if n and call.knobs.chunk_delay_s:
            await asyncio.sleep(call.knobs.chunk_delay_s)
        await response.write(event)
    if cut:
        return hang_up(call, response)
    await response.write_eof()
    return response


def hang_up(call: Call, response: web.StreamResponse) -> web.StreamResponse:
    """Drop the connection mid-body, as a provider that dies mid-answer does: the client sees the body end short."""
    assert call.request.transport is not None  # a request being answered has its connection
    call.request.transport.abort()
    return response
