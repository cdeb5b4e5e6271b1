"""Verifiers: a second opinion on whether two questions ask the same thing, for candidates the guard is unsure of.

upstream  a cheap chat model, through the UpstreamClient like any request: a two-line prompt, max_tokens 1,
          temperature 0; the first word of the answer must be yes or no (anything else is a failure). Its
          tokens are priced and charged to the lookup.
local     a sentence-transformers CrossEncoder the operator supplies (model_path), on a thread of its own:
          "same" when its probability reaches min_score. Costs nothing per call.

Decisions are remembered per pair of questions (cache_size, least recently used go first). A verifier that
fails or times out raises VerifierFailed: the lookup is a miss, never a hit.
"""

import asyncio
import re
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.accounting.pricing import PriceTable
from proxy.accounting.usage import Usage
from proxy.lookup import canonical
from proxy.lookup.config import LOCAL, VerifySettings
from proxy.openai_usage import usage_from
from proxy.stages.upstream import UpstreamClient, read_body


INSTRUCTIONS = ("You decide whether two questions ask the same thing, so that one answer serves both. "
                "Reply with one word: yes or no.")
_FIRST_WORD = re.compile(r"[a-z]+")


class VerifierFailed(Exception):
    """No verdict (an error, a timeout, an answer that is neither yes nor no): the lookup is a miss."""


@dataclass(frozen=True, slots=True)
class Verdict:
    same: bool
    tokens: int = 0
    cost_nanos: int = 0
    remembered: bool = False


def prompt(asked: str, stored: str) -> str:
    return f"Question 1: {asked}\nQuestion 2: {stored}\nDo they ask the same thing?"


class Verifier:
    """The decisions cache around one way of deciding (`_decide`)."""

    def __init__(self, settings: VerifySettings) -> None:
        self.name = settings.model
        self.timeout = settings.timeout_ms / 1000
        self._size = settings.cache_size
        self._decided: OrderedDict[str, bool] = OrderedDict()

    async def verify(self, asked: str, stored: str) -> Verdict:
        key = canonical.digest(asked, stored)
        if key in self._decided:
            self._decided.move_to_end(key)
            return Verdict(self._decided[key], remembered=True)
        try:
            verdict = await asyncio.wait_for(self._decide(asked, stored), self.timeout)
        except VerifierFailed:
            raise
        except Exception as exc:  # a timeout, the upstream's 5xx, a broken model: no verdict
            raise VerifierFailed(f"{type(exc).__name__}: {exc}") from None
        if self._size:
            self._decided[key] = verdict.same
            if len(self._decided) > self._size:
                self._decided.popitem(last=False)
        return verdict

    async def _decide(self, asked: str, stored: str) -> Verdict:
        raise NotImplementedError

    def close(self) -> None:
        pass


class UpstreamVerifier(Verifier):
    def __init__(self, settings: VerifySettings, upstreams: UpstreamClient, prices: PriceTable) -> None:
        super().__init__(settings)
        self._upstreams = upstreams
        self._prices = prices

    async def _decide(self, asked: str, stored: str) -> Verdict:
        upstream = self._upstreams.route(self.name)
        if upstream is None:
            raise VerifierFailed(f"no upstream serves '{self.name}'")
        body = orjson.dumps({"model": self.name, "max_tokens": 1, "temperature": 0, "messages": [
            {"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": prompt(asked, stored)}]})
        async with self._upstreams.open(upstream, "POST", "/chat/completions", body,
                                        {"Content-Type": "application/json"}) as response:
            raw = await read_body(upstream, response)
            if response.status != 200:
                raise VerifierFailed(f"the upstream '{upstream.name}' answered {response.status}")
        answer = orjson.loads(raw)
        text = ((answer.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
        word = _FIRST_WORD.match(text.strip().lower())
        if word is None or word.group() not in ("yes", "no"):
            raise VerifierFailed(f"'{self.name}' answered {text[:40]!r}, neither yes nor no")
        usage = usage_from(answer.get("usage")) or Usage()
        cost = self._prices.cost_nanos(self.name, usage) or 0
        return Verdict(word.group() == "yes", usage.prompt_tokens + usage.completion_tokens, cost)


class LocalVerifier(Verifier):
    """The model loads on the verifier's own thread as soon as the policy is built; until it has, verifying
    waits for it (within the timeout)."""

    def __init__(self, settings: VerifySettings, models: Any) -> None:
        super().__init__(settings)
        self._min_score = settings.min_score
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thriftgate-verify")
        self._model: Future = self._thread.submit(models.cross_encoder, settings.model_path)

    async def _decide(self, asked: str, stored: str) -> Verdict:
        model = await asyncio.wrap_future(self._model)
        loop = asyncio.get_running_loop()
        score = await loop.run_in_executor(self._thread, _probability, model, asked, stored)
        return Verdict(score >= self._min_score)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


def _probability(model: Any, asked: str, stored: str) -> float:
    import torch  # the local extra's: present whenever a CrossEncoder loaded

    return float(model.predict([(asked, stored)], activation_fn=torch.nn.Sigmoid(), show_progress_bar=False)[0])


def build_verifier(settings: VerifySettings, *, upstreams: UpstreamClient, prices: PriceTable,
                   models: Any) -> Verifier:
    if settings.model == LOCAL:
        return LocalVerifier(settings, models)
    return UpstreamVerifier(settings, upstreams, prices)
