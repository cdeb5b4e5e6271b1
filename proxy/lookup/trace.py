"""What a lookup did on one request: kept on the exchange, written to the ledger's `lookups` column."""

from dataclasses import dataclass
from typing import Any

import orjson

HEADER = "x-thriftgate-lookup"
SIMILARITY_HEADER = "x-thriftgate-similarity"


@dataclass(slots=True)
class LookupTrace:
    policy: str
    result: str = "miss"  # exact-hit | semantic-hit | answer-hit | miss | write_only | embedder_failed | store_down
    similarity: float | None = None  # of the best candidate that passed the guard
    refused: str | None = None  # why the guard refused the most similar candidate (negation, number, ...)
    embedding_tokens: int = 0
    embedding_cost_nanos: int = 0
    agreed: bool | None = None  # shadow mode: did the fresh answer agree with the candidate's
    verified: str | None = None  # the verifier's verdict on the candidate: same | different | failed
    verify_tokens: int = 0
    verify_cost_nanos: int = 0
    shadow: bool = False
    # Carried from the request to the write; not recorded.
    model: str = ""  # that the lookup keyed on: an answer from another (a budget's downgrade) is not stored
    key: Any = None  # canonical.ChatKey
    vector: Any = None  # the question's embedding, reused to store the answer
    candidate: Any = None  # entries.Entry: the best candidate that passed the guard

    def column(self) -> dict[str, Any]:
        out: dict[str, Any] = {"result": self.result}
        if self.similarity is not None:
            out["similarity"] = round(self.similarity, 4)
        if self.refused is not None:
            out["refused"] = self.refused
        if self.embedding_tokens:
            out["embedding_tokens"] = self.embedding_tokens
            out["embedding_cost_nanos"] = self.embedding_cost_nanos
        if self.verified is not None:
            out["verified"] = self.verified
        if self.verify_tokens or self.verify_cost_nanos:
            out["verify_tokens"] = self.verify_tokens
            out["verify_cost_nanos"] = self.verify_cost_nanos
        if self.agreed is not None:
            out["agreed"] = self.agreed
        if self.shadow:
            out["shadow"] = True
        return out


def ledger_column(traces: dict[str, LookupTrace]) -> str | None:
    """Per lookup policy: its result, similarity, embedding tokens and cost, and shadow agreement (JSON)."""
    if not traces:
        return None
    return orjson.dumps({name: trace.column() for name, trace in traces.items()}).decode()
