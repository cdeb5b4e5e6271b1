"""Embedders: text -> unit vector, with the tokens and cost it took. Concurrent lookups share a call.

upstream  POST /v1/embeddings on a configured upstream, through the UpstreamClient; priced like any request.
local     sentence-transformers on the CPU (the optional extra `thriftgate[local]`), on a thread of its
          own: ~3-40 ms of CPU per batch must never run on the event loop. Costs nothing per call.

A Batcher collects the texts asked for while a call is running (or in the same loop turn) and sends
them as one batch: under load a local model encodes 64 sentences in about the time of 8 single ones.
"""

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from proxy.lookup.calibration import model_identity
from proxy.lookup.config import EmbedderConfig, LocalEmbedderConfig
from proxy.accounting.pricing import PriceTable
from proxy.accounting.tokens import TokenCounter
from proxy.openai_usage import usage_from
from proxy.stages.upstream import UpstreamClient, read_body
from proxy.accounting.usage import Usage


class EmbedderFailed(Exception):
    """The embedder could not embed: the lookup is skipped and the request goes upstream."""


@dataclass(frozen=True, slots=True)
class Embedding:
    vector: np.ndarray  # float32, unit length
    tokens: int
    cost_nanos: int


class Embedder(Protocol):
    name: str
    timeout: float  # seconds a lookup waits for it
    identity: str  # which model embeds: a guard model's calibration holds for the model it was measured with

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def embed(self, text: str) -> Embedding: ...


RunBatch = Callable[[list[str]], Awaitable[list[Embedding]]]


class Batcher:
    def __init__(self, run: RunBatch, *, max_batch: int, max_in_flight: int) -> None:
        self._run_batch = run
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[str, asyncio.Future]] = []
        self._in_flight: set[asyncio.Task] = set()
        self._dispatch_planned = False

    async def embed(self, text: str) -> Embedding:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((text, future))
        self._plan_dispatch()
        return await future

    async def close(self) -> None:
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _plan_dispatch(self) -> None:
        # On the next loop turn, so that lookups arriving in this one join the batch.
        if not self._dispatch_planned and self._queue and len(self._in_flight) < self._max_in_flight:
            self._dispatch_planned = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._dispatch_planned = False
        while self._queue and len(self._in_flight) < self._max_in_flight:
            batch = [(text, future) for text, future in self._queue[: self._max_batch] if not future.done()]
            del self._queue[: self._max_batch]
            if batch:
                task = asyncio.get_running_loop().create_task(self._run(batch))
                self._in_flight.add(task)

    async def _run(self, batch: list[tuple[str, asyncio.Future]]) -> None:
        try:
            results = await self._run_batch([text for text, _ in batch])
            if len(results) != len(batch):
                raise EmbedderFailed(f"asked for {len(batch)} embeddings, got {len(results)}")
        except Exception as exc:  # any failure is the embedder's: every waiting lookup is skipped
            failure = exc if isinstance(exc, EmbedderFailed) else EmbedderFailed(f"{type(exc).__name__}: {exc}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
        else:
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
        finally:
            self._in_flight.discard(asyncio.current_task())
            self._plan_dispatch()


class UpstreamEmbedder:
    def __init__(self, name: str, upstream: str, model: str, *, timeout: float, max_batch: int,
                 upstreams: UpstreamClient, prices: PriceTable, tokens: TokenCounter) -> None:
        self.name = name
        self.timeout = timeout
        self.identity = f"upstream:{model}"
        self._upstream_name = upstream
        self._model = model
        self._upstreams = upstreams
        self._prices = prices
        self._tokens = tokens
        self._batcher = Batcher(self._run, max_batch=max_batch, max_in_flight=8)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        await self._batcher.close()

    async def embed(self, text: str) -> Embedding:
        return await self._batcher.embed(text)

    async def _run(self, texts: list[str]) -> list[Embedding]:
        upstream = self._upstreams.named(self._upstream_name)
        body = orjson.dumps({"model": self._model, "input": texts})
        headers = {"Content-Type": "application/json"}
        async with self._upstreams.open(upstream, "POST", "/embeddings", body, headers) as response:
            raw = await read_body(upstream, response)
            if response.status != 200:
                raise EmbedderFailed(f"the upstream '{upstream.name}' answered {response.status}")
        answer = orjson.loads(raw)
        rows = sorted(answer["data"], key=lambda item: item["index"])
        vectors = _unit_rows(np.asarray([row["embedding"] for row in rows], dtype=np.float32))
        counted = [self._tokens.for_model(self._model).text(text) for text in texts]
        usage = usage_from(answer.get("usage"))
        tokens = _shares(usage.prompt_tokens if usage and usage.prompt_tokens else sum(counted), counted)
        return [Embedding(vector, count, self._prices.cost_nanos(self._model, Usage(prompt_tokens=count)) or 0)
                for vector, count in zip(vectors, tokens)]


class LocalModels:
    """sentence-transformers models by path, each loaded once and shared by the apps handed this object
    (tests build many apps; the CLI builds one)."""

    def __init__(self) -> None:
        self._models: dict[Any, Any] = {}

    def load(self, path: str) -> Any:
        """Runs on an embedder's thread; two threads may race to load the same path once, harmlessly."""
        model = self._models.get(path)
        if model is None:
            from sentence_transformers import SentenceTransformer  # the optional extra: imported only when used

            model = self._models[path] = SentenceTransformer(path, device="cpu", local_files_only=True)
        return model

    def cross_encoder(self, path: str) -> Any:
        """A pair model for a local verifier (proxy/lookup/verifier.py); on its thread, like load."""
        model = self._models.get(("cross-encoder", path))
        if model is None:
            from sentence_transformers import CrossEncoder

            model = self._models[("cross-encoder", path)] = CrossEncoder(path, device="cpu", local_files_only=True)
        return model


class LocalEmbedder:
    def __init__(self, name: str, config: LocalEmbedderConfig, models: LocalModels) -> None:
        self.name = name
        self.timeout = config.timeout_ms / 1000
        self.identity = model_identity(config.model_path)
        self._path = config.model_path
        self._models = models
        self._model: Any = None
        self._thread: ThreadPoolExecutor | None = None
        self._batcher = Batcher(self._run, max_batch=config.max_batch, max_in_flight=1)

    async def start(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"thriftgate-embed-{self.name}")
        self._model = await asyncio.get_running_loop().run_in_executor(self._thread, self._models.load, self._path)

    async def close(self) -> None:
        await self._batcher.close()
        if self._thread is not None:
            self._thread.shutdown(wait=True)

    async def embed(self, text: str) -> Embedding:
        if self._model is None:
            raise EmbedderFailed(f"the local model of '{self.name}' is not loaded")
        return await self._batcher.embed(text)

    async def _run(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._encode, texts)

    def _encode(self, texts: list[str]) -> list[Embedding]:
        vectors = self._model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True)
        counts = [len(ids) for ids in self._model.tokenizer(texts)["input_ids"]]
        return [Embedding(vector.astype(np.float32), count, 0) for vector, count in zip(vectors, counts)]


def build_embedder(name: str, config: EmbedderConfig, *, upstreams: UpstreamClient, prices: PriceTable,
                   tokens: TokenCounter, models: LocalModels) -> Embedder:
    if isinstance(config, LocalEmbedderConfig):
        return LocalEmbedder(name, config, models)
    return UpstreamEmbedder(name, config.upstream, config.model, timeout=config.timeout_ms / 1000,
                            max_batch=config.max_batch, upstreams=upstreams, prices=prices, tokens=tokens)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.all(norms > 0) or not np.isfinite(vectors).all():
        raise EmbedderFailed("the upstream returned an empty or invalid vector")
    return vectors / norms


def _shares(total: int, counted: list[int]) -> list[int]:
    """The batch's billed tokens split in proportion to each text's own count; they add up to total."""
    weights = counted if sum(counted) else [1] * len(counted)
    shares = [total * weight // sum(weights) for weight in weights]
    shares[-1] += total - sum(shares)
    return shares
