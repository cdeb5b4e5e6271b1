"""exact_cache: serve the stored answer of an identical request, for the same tenant (docs/lookup.md).

Identical once written the same way (proxy.lookup.canonical): key order, defaults spelled out or
not, a text part or a string. No embedder, no similarity: a hash and one store read.
"""

import re
from typing import Any, Literal

from proxy.exchange import Exchange
from proxy.lookup import canonical
from proxy.lookup.settings import CacheSettings
from proxy.lookup.entries import Entry
from proxy.lookup.policy import LookupPolicy
from proxy.lookup.trace import LookupTrace

_SPACE = re.compile(r"\s+")


class Settings(CacheSettings):
    type: Literal["exact_cache"]


class Policy(LookupPolicy):
    KIND = "exact"

    def _id(self, ex: Exchange, trace: LookupTrace) -> str:
        return canonical.digest(self._name, canonical.tenant(self._settings.scope, ex), ex.model, trace.key.whole)

    async def _find(self, ex: Exchange, trace: LookupTrace, now: float) -> Entry | None:
        if not self._settings.reads:
            return None
        entry = await self._lookups.entries.get(self._id(ex, trace), now)
        if entry is None or entry.kind != self.KIND or not self._fits(ex, entry):
            return None
        trace.candidate = entry
        return entry

    def _entry(self, ex: Exchange, trace: LookupTrace, choice: dict[str, Any], model: str, now: float) -> Entry | None:
        entry_id = self._id(ex, trace)
        return Entry(
            id=entry_id, kind=self.KIND, owner=self._name, scope=canonical.tenant(self._settings.scope, ex),
            partition=entry_id, question="", vector=None, model=model, choices=[choice],
            completion_tokens=ex.usage.completion_tokens if ex.usage else None,
            created=now, expires=now + self._settings.ttl,
        )

    async def _agrees(self, trace: LookupTrace, stored: Entry, fresh: str) -> bool:
        """Exact: the same text, but for whitespace."""
        return _SPACE.sub(" ", stored.text()).strip() == _SPACE.sub(" ", fresh).strip()
