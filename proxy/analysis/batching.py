"""`thriftgate whatif --batch`: how much recorded traffic could have gone through a Batch API, and what it saves.

A request could have waited for a batch when it was answered whole (not streamed: a stream's reader is
waiting on it), on an endpoint batches serve, successfully, and not already in a batch. Those tagged with
a latency-tolerant tag (`--latency-tolerant-tags`) are the ones to move; all non-streamed ones are the upper
bound. The saving is exact on the tokens used: the batch price (PriceTable.batch_cost_nanos) against what
was paid.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from proxy.accounting.pricing import PriceTable
from proxy.analysis.records import group_names, is_batch_line, is_request, tags_of, usage_of
from proxy.analysis.whatif import GROUPINGS, WhatIfError

# OpenAI's Batch API serves the first four; Anthropic's Message Batches serve messages.
BATCHABLE_ENDPOINTS = frozenset({"chat", "completions", "embeddings", "responses", "messages"})
DEFAULT_TOLERANT_TAGS = ("batch", "offline", "background", "eval", "nightly")


@dataclass(slots=True)
class _Tally:
    requests: int = 0
    eligible: int = 0  # non-streamed, batchable, answered, priced, not already batched
    tolerant: int = 0  # eligible and tagged latency-tolerant
    eligible_nanos: int = 0
    eligible_batch_nanos: int = 0
    tolerant_nanos: int = 0
    tolerant_batch_nanos: int = 0
    no_batch_price: int = 0
    already_batched: int = 0

    def summary(self, name: str) -> dict:
        return {
            "group": name, "requests": self.requests, "already_batched": self.already_batched,
            "eligible_requests": self.eligible, "tolerant_requests": self.tolerant,
            "tolerant_share": self.tolerant / self.requests if self.requests else 0.0,
            "tolerant_actual_nanos": self.tolerant_nanos, "tolerant_batch_nanos": self.tolerant_batch_nanos,
            "tolerant_saving_nanos": self.tolerant_nanos - self.tolerant_batch_nanos,
            "eligible_actual_nanos": self.eligible_nanos, "eligible_batch_nanos": self.eligible_batch_nanos,
            "eligible_saving_nanos": self.eligible_nanos - self.eligible_batch_nanos,
            "no_batch_price_requests": self.no_batch_price,
        }


def batch_whatif(rows: Iterable[dict], prices: PriceTable, *, by: str, tolerant_tags: Iterable[str],
                 since: float, until: float) -> dict:
    if by not in GROUPINGS or by == "policy":
        raise WhatIfError(f"cannot group batch eligibility by {by!r}; use one of: "
                          f"{', '.join(g for g in GROUPINGS if g != 'policy')}")
    tolerant = frozenset(tolerant_tags)
    groups: dict[str, _Tally] = {}
    total = _Tally()
    for row in rows:
        names = group_names(row, by)
        tallies = [total, *(groups.setdefault(name, _Tally()) for name in names)]
        if not is_request(row):
            continue  # a failed attempt, never a batch candidate: its request's row is counted
        for tally in tallies:
            tally.requests += 1
        if is_batch_line(row):
            for tally in tallies:
                tally.already_batched += 1
            continue
        if row["stream"] or row["endpoint"] not in BATCHABLE_ENDPOINTS or row["status"] >= 400 \
                or row["cost_nanos"] is None:
            continue
        batch = prices.batch_cost_nanos(row["model"], usage_of(row))
        if batch is None:
            for tally in tallies:
                tally.no_batch_price += 1
            continue
        tags = tags_of(row)
        for tally in tallies:
            tally.eligible += 1
            tally.eligible_nanos += row["cost_nanos"]
            tally.eligible_batch_nanos += batch
            if not tolerant.isdisjoint(tags):
                tally.tolerant += 1
                tally.tolerant_nanos += row["cost_nanos"]
                tally.tolerant_batch_nanos += batch
    ordered = sorted(groups.items(), key=lambda kv: (-kv[1].eligible_nanos, kv[0]))
    return {"since": since, "until": until, "by": by, "latency_tolerant_tags": sorted(tolerant),
            "groups": [tally.summary(name) for name, tally in ordered], "total": total.summary("TOTAL"),
            "basis": "exact: the same tokens at each model's batch price (its batch_input/batch_output, else its "
                     "provider's batch discount)"}

