"""answers: serve an operator's answer to a question like one they loaded (docs/lookup.md).

`thriftgate lookup load answers.jsonl --scope team:support --embedder NAME` loads question/answer
pairs; a request whose last user message matches a loaded question (threshold and near-miss guard)
is answered from the store. Requests never add answers: only the operator does.
"""

from typing import Literal

from proxy.exchange import Exchange
from proxy.lookup import canonical
from proxy.lookup.settings import LookupSettings, SimilaritySettings
from proxy.lookup.similar import SimilarityLookup
from proxy.lookup.trace import LookupTrace


class Settings(LookupSettings, SimilaritySettings):
    type: Literal["answers"]
    mode: Literal["on", "shadow", "off"] = "on"

    @property
    def writes(self) -> bool:
        return False


def partition(scope: str, embedder: str) -> str:
    return canonical.digest("answers", scope, embedder)


class Policy(SimilarityLookup):
    KIND = "answer"

    def _partition(self, ex: Exchange, trace: LookupTrace) -> str:
        return partition(canonical.tenant(self._settings.scope, ex), self._settings.embedder)
