"""The flow every lookup policy shares: find an entry for the request and serve it, else store the answer.

on_request          eligible request (chat, completions, responses; one choice, no logprobs, not too hot)
                    -> look up; a hit is served at once (ex.early_response), a miss goes upstream with
                    `x-thriftgate-lookup: miss`.
on_response         a complete answer is stored, off the request path (Lookups.write).
on_shadow_response  shadow mode: the lookup ran on a copy of the request, the upstream answered the
                    real one; judge whether the fresh answer agrees with the would-be hit, then store it.
An embedder that fails or times out, or a store that is down, makes the lookup a miss: never an error.
"""

import asyncio
from typing import TYPE_CHECKING, Any

from proxy.exchange import Exchange, Saving
from proxy.lookup import canonical, respond
from proxy.lookup.embedders import EmbedderFailed
from proxy.lookup.entries import Entry, LookupUnavailable
from proxy.lookup.stored import fresh_choice
from proxy.lookup.trace import HEADER, SIMILARITY_HEADER, LookupTrace
from proxy.accounting.usage import Usage

if TYPE_CHECKING:  # proxy.policies imports the lookup policies, which import this module
    from proxy.lookup.settings import LookupSettings
    from proxy.policies.base import Services

SHADOW_BASIS = "shadow"


def _never(body: dict[str, Any]) -> bool:
    return False


def _one_prompt(body: dict[str, Any]) -> bool:
    prompt = body.get("prompt")
    one = isinstance(prompt, str) or isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str)
    return one and not body.get("echo") and body.get("best_of") in (None, 1)


_ELIGIBLE = {
    "chat": lambda body: isinstance(body.get("messages"), list),
    "completions": _one_prompt,
    "responses": lambda body: isinstance(body.get("input"), str | list),
}


class LookupPolicy:
    KIND = ""  # exact | semantic | answer: a hit is reported as "<KIND>-hit"

    def __init__(self, settings: "LookupSettings", services: "Services") -> None:
        self._name = settings.name or settings.type
        self._settings = settings
        self._shadow = settings.mode == "shadow"
        self._lookups = services.lookups
        self._prices = services.prices
        self._tokens = services.tokens

    # ---- what each kind says ----

    async def _find(self, ex: Exchange, trace: LookupTrace, now: float) -> Entry | None:
        raise NotImplementedError

    def _entry(self, ex: Exchange, trace: LookupTrace, choice: dict[str, Any], model: str, now: float) -> Entry | None:
        """The entry that stores this answer, or None when this kind stores nothing."""
        return None

    async def _agrees(self, trace: LookupTrace, stored: Entry, fresh: str) -> bool:
        raise NotImplementedError

    # ---- the shared flow ----

    async def on_request(self, ex: Exchange) -> str | None:
        if not self._eligible(ex):
            return None
        trace = LookupTrace(self._name, shadow=self._shadow, model=ex.model,
                            key=canonical.request_key(ex.endpoint, ex.body))
        ex.lookups[self._name] = trace  # shared with the real exchange when this runs on a shadow copy
        entry = None
        try:
            entry = await self._find(ex, trace, self._lookups.clock())
        except (EmbedderFailed, TimeoutError):
            trace.result = "embedder_failed"
        except LookupUnavailable:
            trace.result = "store_down"
        ex.side_cost_nanos += trace.embedding_cost_nanos + trace.verify_cost_nanos
        if entry is not None:
            trace.result = f"{self.KIND}-hit"
        self._lookups.count(self._name, f"shadow_{trace.result}" if self._shadow else trace.result)
        if self._shadow:
            return trace.result if entry is not None else None  # the chain marks it shadow:<result>
        if entry is None:
            if trace.verify_cost_nanos:  # a verifier that said no was paid for and saved nothing
                ex.savings.append(Saving(self._name, "lookup", -trace.verify_cost_nanos))
            ex.answer_headers = {**(ex.answer_headers or {}), HEADER: "miss"}
            return None
        self._serve(ex, entry, trace)
        return trace.result

    async def on_response(self, ex: Exchange) -> None:
        trace = ex.lookups.get(self._name)
        if trace is not None and not trace.result.endswith("-hit"):
            self._store(ex, trace)

    async def on_shadow_response(self, ex: Exchange) -> None:
        trace = ex.lookups.get(self._name)
        if trace is None:
            return
        if trace.result.endswith("-hit") and ex.cost_nanos is not None:
            would_save = ex.cost_nanos - ex.side_cost_nanos
            ex.savings.append(Saving(self._name, "lookup", would_save, basis=SHADOW_BASIS))
        fresh = fresh_choice(ex, tool_calls=False)
        if trace.candidate is not None and fresh is not None:
            text = (fresh[0].get("message") or {}).get("content") or ""
            paid = trace.embedding_cost_nanos
            try:
                trace.agreed = await self._agrees(trace, trace.candidate, text)
            except (EmbedderFailed, TimeoutError):
                pass  # agreement unknown: the report leaves this request out
            # Judging is paid for like the lookup; the request is settled already, so its cost grows here.
            ex.side_cost_nanos += trace.embedding_cost_nanos - paid
            if ex.cost_nanos is not None:
                ex.cost_nanos += trace.embedding_cost_nanos - paid
        self._store(ex, trace)

    def _eligible(self, ex: Exchange) -> bool:
        """One answer, no log probabilities, not sampled hotter than max_temperature; for completions one prompt
        string, not echoed, no best_of (background Responses jobs are refused before the policies)."""
        body = ex.body
        if body is None or not _ELIGIBLE.get(ex.endpoint, _never)(body):
            return False
        if body.get("n") not in (None, 1) or body.get("logprobs") or body.get("top_logprobs"):
            return False
        hottest = self._settings.max_temperature
        return hottest is None or canonical.temperature(body) <= hottest

    def _fits(self, ex: Exchange, entry: Entry) -> bool:
        """A stored answer longer than the request's output limit would have been cut: not a hit."""
        return ex.max_output_tokens is None or entry.completion_tokens is None \
            or entry.completion_tokens <= ex.max_output_tokens

    def _serve(self, ex: Exchange, entry: Entry, trace: LookupTrace) -> None:
        ex.usage = Usage()  # nothing generated: the request costs its embedding (side_cost_nanos)
        ex.status = 200
        completion = entry.completion_tokens
        if completion is None:
            completion = self._tokens.for_model(ex.model).text(entry.text())
        would_cost = self._prices.cost_nanos(
            ex.requested_model, Usage(prompt_tokens=ex.prompt_tokens(), completion_tokens=completion))
        saved = (would_cost or 0) - trace.verify_cost_nanos  # net of what verifying the hit cost
        if saved:
            ex.savings.append(Saving(self._name, "lookup", saved))
        headers = {HEADER: trace.result}
        if trace.similarity is not None:
            headers[SIMILARITY_HEADER] = f"{trace.similarity:.4f}"
        ex.answer_headers = {**(ex.answer_headers or {}), **headers}  # over an earlier lookup's "miss"
        ex.early_response = respond.answer(
            ex.endpoint, request_id=ex.request_id, model=entry.model or ex.model, choice=entry.choices[0],
            stream=ex.stream, include_usage=ex.client_wants_usage, cost_nanos=ex.side_cost_nanos, request=ex.body)

    def _store(self, ex: Exchange, trace: LookupTrace) -> None:
        if not self._settings.writes or ex.model != trace.model:
            return
        fresh = fresh_choice(ex, tool_calls=getattr(self._settings, "cache_tool_calls", False))
        if fresh is None:
            return
        now = self._lookups.clock()
        entry = self._entry(ex, trace, fresh[0], fresh[1], now)
        if entry is not None:
            max_entries = getattr(self._settings, "max_entries", 0)
            self._lookups.write(self._lookups.entries.put(entry, max_entries, now), self._name)


async def embed(lookups: Any, embedder_name: str, text: str, trace: LookupTrace) -> Any:
    """The text's vector; its tokens and cost are added to the trace (and so to the request)."""
    embedder = lookups.embedder(embedder_name)
    embedding = await asyncio.wait_for(embedder.embed(text), embedder.timeout)
    trace.embedding_tokens += embedding.tokens
    trace.embedding_cost_nanos += embedding.cost_nanos
    return embedding.vector
