"""The provider of `thriftgate demo`: a small simulated OpenAI-compatible API.

It answers chat completions (whole or streamed, with usage when asked, reasoning tokens for o-series
models, a share of prompts read from the cache, short answers when a system message asks for concision)
and embeddings, takes as long as a real model
would (a first-token delay, then tokens at the model's speed) and now and then refuses with a 429 or
a 500, so that every panel of the dashboards has something to show. Counts are exact for what it
sends: the proxy's own tokenizer counts them.
"""

import asyncio
import base64
import random
import time
import uuid
from array import array
from dataclasses import dataclass

import orjson
from aiohttp import web

from proxy.accounting.tokens import TokenCounter

VOCABULARY = (
    "the proxy counts every token and prices it so the team can see where the money goes while requests "
    "stream through quickly with usage reported at the end and budgets checked before each call reaches "
    "a model that answers in plain words about rivers mountains invoices latency caching and forecasts"
).split()
RATE_LIMITED_SHARE = 0.02
SERVER_ERROR_SHARE = 0.01
CACHED_PROMPT_SHARE = 0.3  # requests whose prompt is half read from the provider's cache
REASONING_PER_VISIBLE_TOKEN = 2  # o-series models think about twice what they say


@dataclass(frozen=True, slots=True)
class Pace:
    first_token_seconds: tuple[float, float]  # uniform range
    tokens_per_second: float


_REASONING_PACE = Pace((0.8, 2.0), 120)
_PACES = (("gpt-4o-mini", Pace((0.15, 0.4), 110)), ("claude", Pace((0.3, 0.7), 60)))
_DEFAULT_PACE = Pace((0.2, 0.6), 70)


def _asks_concise(messages: list) -> bool:
    """A system message asking for brevity (the demo's concise policy adds one) gets a short answer."""
    return any(isinstance(m, dict) and m.get("role") in ("system", "developer")
               and "concise" in str(m.get("content", "")).lower() for m in messages)


def _is_reasoning_model(model: str) -> bool:
    return model[:1] == "o" and model[1:2].isdigit()  # o1, o3-mini, o4-mini...


def _pace(model: str) -> Pace:
    if _is_reasoning_model(model):
        return _REASONING_PACE
    return next((pace for prefix, pace in _PACES if model.startswith(prefix)), _DEFAULT_PACE)


class SimulatedProvider:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._tokens = TokenCounter()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.models)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model, messages = body["model"], body["messages"]
        if (refusal := self._refusal()) is not None:
            return refusal
        tokenizer = self._tokens.for_model(model)
        length = self._rng.randint(4, 24) if _asks_concise(messages) else self._rng.randint(12, 90)
        words = self._rng.choices(VOCABULARY, k=length)
        text = " ".join(words)
        prompt = tokenizer.chat(messages)
        visible = tokenizer.text(text)
        reasoning = visible * REASONING_PER_VISIBLE_TOKEN if _is_reasoning_model(model) else 0
        cached = prompt // 2 if self._rng.random() < CACHED_PROMPT_SHARE else 0
        usage = {
            "prompt_tokens": prompt, "completion_tokens": visible + reasoning,
            "total_tokens": prompt + visible + reasoning,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": model}
        pace = _pace(model)
        await asyncio.sleep(self._rng.uniform(*pace.first_token_seconds))
        if body.get("stream"):
            wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, head, words, usage if wants_usage else None, pace)
        await asyncio.sleep(visible / pace.tokens_per_second)
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return web.json_response({**head, "object": "chat.completion", "choices": [choice], "usage": usage},
                                 dumps=_dumps)

    async def _stream(self, request: web.Request, head: dict, words: list[str], usage: dict | None,
                      pace: Pace) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        chunk = {**head, "object": "chat.completion.chunk"}
        deltas = [{"role": "assistant", "content": ""}]
        deltas += [{"content": (" " if i else "") + word} for i, word in enumerate(words)]
        try:
            await response.prepare(request)
            for delta in deltas:
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                await response.write(_event({**chunk, "choices": [choice]}))
                await asyncio.sleep(1 / pace.tokens_per_second)
            await response.write(_event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
            if usage is not None:
                await response.write(_event({**chunk, "choices": [], "usage": usage}))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            pass  # the proxy went away mid-stream (its client did, or the demo is stopping): as a provider would
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (refusal := self._refusal()) is not None:
            return refusal
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        tokens = self._tokens.for_model(body["model"]).embedding_input(inputs)
        dimensions = body.get("dimensions") or 1536
        data = [{"object": "embedding", "index": i, "embedding": self._vector(dimensions, body.get("encoding_format"))}
                for i in range(len(inputs))]
        await asyncio.sleep(self._rng.uniform(0.03, 0.12))
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return web.json_response({"object": "list", "data": data, "model": body["model"], "usage": usage},
                                 dumps=_dumps)

    async def models(self, request: web.Request) -> web.Response:
        names = ("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "o3-mini", "text-embedding-3-small")
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "thriftgate-demo"} for name in names]
        return web.json_response({"object": "list", "data": data})

    def _vector(self, dimensions: int, encoding_format: str | None) -> list[float] | str:
        values = [self._rng.uniform(-1, 1) for _ in range(dimensions)]
        return base64.b64encode(array("f", values).tobytes()).decode() if encoding_format == "base64" else values

    def _refusal(self) -> web.Response | None:
        draw = self._rng.random()
        if draw < RATE_LIMITED_SHARE:
            error = {"message": "Rate limit reached (simulated).", "type": "requests", "code": "rate_limit_exceeded"}
            return web.json_response({"error": error}, status=429, headers={"Retry-After": "1"})
        if draw < RATE_LIMITED_SHARE + SERVER_ERROR_SHARE:
            error = {"message": "The server had an error (simulated).", "type": "server_error", "code": None}
            return web.json_response({"error": error}, status=500)
        return None


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def _event(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"
