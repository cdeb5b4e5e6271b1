"""One request on its way through the fake: its switches, its ids and headers, and how its answer is sent."""

import asyncio
import hashlib
import random
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.fake import wire
from tests.fake.content import Generated, OutputShape, generate, reply_length
from tests.fake.tokens import token_pieces

# Faults, by header `x-fake-fault: NAME`, by model `fake-NAME`, or by the fake's own FaultPlan.
# cut and stall take a count: `cut:3` drops the connection after 3 stream events, `stall:3` goes silent after them.
ERROR_FAULTS = frozenset({"400", "context", "429", "500", "502", "503"})
FAULTS = frozenset({*ERROR_FAULTS, "timeout", "cut", "stall", "error-event", "reset", "no-usage", "garbage"})
COUNTED_FAULTS = frozenset({"cut", "stall", "error-event"})
STALL_SECONDS = 3600.0  # longer than any client waits; ended when the client hangs up
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


def split_fault(fault: str) -> tuple[str, int | None]:
    """`cut:3` -> ("cut", 3); `cut` -> ("cut", None); a name or count it does not know raises ValueError."""
    name, _, count = fault.partition(":")
    if name not in FAULTS or (count and (name not in COUNTED_FAULTS or not count.isdigit())):
        raise ValueError(f"fault {fault!r}: expected one of {sorted(FAULTS)} ({', '.join(sorted(COUNTED_FAULTS))} "
                         "may take :N events)")
    return name, int(count) if count else None


@dataclass(slots=True)
class FaultPlan:
    """Faults this fake plays on its own, whatever a request asks (a proxy forwards one request's headers to
    every deployment alike): the script first, one entry per request (None: no fault), then `rate` of the
    requests at random (seeded: the same run plays the same faults) with a fault among `choices`."""

    script: deque[str | None]
    rate: float = 0.0
    choices: tuple[str, ...] = ("500",)
    rng: random.Random = field(default_factory=random.Random)
    latency_s: float = 0.0
    retry_after: str | None = None  # the Retry-After of its 429s and 503s

    def next(self) -> str | None:
        if self.script:
            return self.script.popleft()
        return self.rng.choice(self.choices) if self.rate and self.rng.random() < self.rate else None

    @classmethod
    def of(cls, *, script: Iterable[str | None] = (), rate: float = 0.0, choices: Iterable[str] = ("500",),
           seed: int = 0, latency_ms: int = 0, retry_after: str | None = None) -> "FaultPlan":
        for fault in (*script, *choices):
            if fault is not None:
                split_fault(fault)
        return cls(deque(script), rate, tuple(choices), random.Random(seed), latency_ms / 1000, retry_after)


@dataclass(slots=True)
class UpstreamState:
    seed: int
    models: frozenset[str]
    api_keys: frozenset[str]
    recorded: list[RecordedRequest] | None
    fault_hits: Counter[tuple[str, str]] = field(default_factory=Counter)
    served: int = 0
    plan: FaultPlan | None = None


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
        if fault is not None:
            split_fault(fault)  # a typo must not pass for a request that went well
        fault = fault or (model.removeprefix("fake-") if model.startswith("fake-") else None)
        if fault is not None and fault.partition(":")[0] not in FAULTS:
            fault = None  # a fake-* model that names no fault: served as a model
        return cls(
            words=int(headers["x-fake-words"]) if "x-fake-words" in headers else None,
            latency_s=_seconds(headers, "x-fake-latency-ms"),
            chunk_delay_s=_seconds(headers, "x-fake-chunk-delay-ms"),
            fault=fault,
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
    fault: str | None = None  # the knob's fault (unless x-fake-fault-times has used it up), or the plan's
    fault_after: int | None = None  # cut:N, stall:N: the events sent before it

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
    if call.fault not in COUNTED_FAULTS:
        return web.Response(body=body, content_type="application/json", headers=call.headers())
    response = web.StreamResponse(headers={**call.headers(), "Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(call.request)
    if call.fault == "stall":
        await asyncio.sleep(STALL_SECONDS)
    await response.write(body[: len(body) // 2])
    return hang_up(call, response)


async def send_stream(call: Call, events: list[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(headers={**call.headers(), "Content-Type": "text/event-stream; charset=utf-8"})
    await response.prepare(call.request)
    broken = call.fault in COUNTED_FAULTS
    if broken:  # by default a cut comes after half the events (before any finish_reason), a stall before any
        default = len(events) // 2 if call.fault == "cut" else 0
        events = events[: default if call.fault_after is None else min(call.fault_after, len(events) - 1)]
    for n, event in enumerate(events):
        if n and call.knobs.chunk_delay_s:
            await asyncio.sleep(call.knobs.chunk_delay_s)
        await response.write(event)
    if call.fault == "stall":
        await asyncio.sleep(STALL_SECONDS)
    if call.fault == "error-event":  # as OpenAI ends a stream that failed on its side
        message = "The server had an error while processing your request. Sorry about that!"
        await response.write(b"data: " + wire.error_body(message, "server_error") + b"\n\n")
    elif broken:
        return hang_up(call, response)
    await response.write_eof()
    return response


def hang_up(call: Call, response: web.StreamResponse) -> web.StreamResponse:
    """Drop the connection mid-body, as a provider that dies mid-answer does: the client sees the body end short."""
    assert call.request.transport is not None  # a request being answered has its connection
    call.request.transport.abort()
    return response
