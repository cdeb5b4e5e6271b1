"""semantic_cache: serve the stored answer of an earlier question that means the same (docs/lookup.md).

Entries are partitioned by tenant scope, model, embedder and everything before the question; a
match needs the operating threshold and the near-miss guard (negations, alternatives, numbers, names, word
order), or, below the threshold, a verifier's yes (proxy/lookup/similar.py).
"""

from typing import Any, Literal

from proxy.exchange import Exchange
from proxy.lookup import canonical
from proxy.lookup.config import Duration
from proxy.lookup.settings import CacheSettings, SimilaritySettings
from proxy.lookup.entries import Entry
from proxy.lookup.similar import SimilarityLookup
from proxy.lookup.trace import LookupTrace


class Settings(CacheSettings, SimilaritySettings):
    type: Literal["semantic_cache"]
    ttl: Duration = 86400.0


class Policy(SimilarityLookup):
    KIND = "semantic"

    def _partition(self, ex: Exchange, trace: LookupTrace) -> str:
        settings = self._settings
        return canonical.digest(self._name, canonical.tenant(settings.scope, ex), ex.model, settings.embedder,
                                trace.key.context)

    def _entry(self, ex: Exchange, trace: LookupTrace, choice: dict[str, Any], model: str, now: float) -> Entry | None:
        if trace.vector is None:
            return None  # the lookup never embedded the question (its embedder failed)
        partition = self._partition(ex, trace)
        return Entry(
            id=canonical.digest(partition, trace.key.question), kind=self.KIND, owner=self._name,
            scope=canonical.tenant(self._settings.scope, ex), partition=partition, question=trace.key.question,
            vector=trace.vector, model=model, choices=[choice],
            completion_tokens=ex.usage.completion_tokens if ex.usage else None,
            created=now, expires=now + self._settings.ttl,
        )
