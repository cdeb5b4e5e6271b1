"""Semantic lookups (semantic_cache, answers): the nearest stored questions, then the near-miss guard."""

import asyncio

import numpy as np

from proxy.exchange import Exchange
from proxy.lookup import guard
from proxy.lookup.entries import Entry
from proxy.lookup.policy import LookupPolicy, embed
from proxy.lookup.trace import LookupTrace

CANDIDATES = 5  # the nearest few: the most similar may be a near miss the guard refuses


class SimilarityLookup(LookupPolicy):
    def _partition(self, ex: Exchange, trace: LookupTrace) -> str:
        raise NotImplementedError

    async def _find(self, ex: Exchange, trace: LookupTrace, now: float) -> Entry | None:
        question = trace.key.question
        if not question.strip():
            return None  # the conversation does not end with a user's question
        trace.vector = await embed(self._lookups, self._settings.embedder, question, trace)
        if not self._settings.reads:
            return None
        # In shadow mode candidates below the threshold are recorded too: the report shows every band.
        floor = min(self._settings.shadow_floor, self._settings.threshold) if self._shadow else self._settings.threshold
        asked = guard.facts(question)
        nearest = await self._lookups.entries.nearest(self._partition(ex, trace), trace.vector, CANDIDATES, now)
        for entry, similarity in nearest:
            if similarity < floor:
                break
            if entry.kind != self.KIND or not self._fits(ex, entry):
                continue
            refused = guard.refusal(asked, guard.facts(entry.question))
            if refused is not None:
                trace.refused = trace.refused or refused
                continue
            trace.similarity, trace.candidate = similarity, entry
            return entry if similarity >= self._settings.threshold else None
        return None

    async def _agrees(self, trace: LookupTrace, stored: Entry, fresh: str) -> bool:
        """Two answers agree when their embeddings are at least `agreement` alike."""
        if not fresh.strip() or not stored.text().strip():
            return fresh.strip() == stored.text().strip()
        name = self._settings.embedder
        ours, theirs = await asyncio.gather(embed(self._lookups, name, stored.text(), trace),
                                            embed(self._lookups, name, fresh, trace))
        return float(np.dot(ours, theirs)) >= self._settings.agreement
