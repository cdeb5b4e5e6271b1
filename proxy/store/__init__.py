"""The state budgets and keys need: counters with reservations, fleet spend totals, virtual keys.

Two stores pass one contract suite (tests/budgets): MemoryStore (one process) and RedisStore (a
fleet of replicas, serving reservations from leases: store/leases.py). Amounts are integers:
nano-dollars, tokens or requests.

A counter holds `used` (settled) plus live holds (reservations). `reserve` checks every counter a
request touches and holds the amounts in all of them, or in none, as one atomic step. A hold dies
at its deadline: a request whose process crashed stops holding budget without anyone releasing it.
`settle` drops the request's holds and adds what it really used (a repeat within
SETTLE_REPLAY_SECONDS is applied once);
`release` drops holds only (a reservation replaced by another, for a downgraded model).
Callers pass `now`: the clock is theirs (tests inject one), so windows and deadlines agree.
"""

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

SPEND_DIMENSIONS = ("model", "team", "key", "day")
SPEND_METRICS = ("requests", "prompt_tokens", "completion_tokens", "cached_prompt_tokens", "cache_write_tokens",
                 "reasoning_tokens", "cost_nanos", "unpriced_requests")
SPEND_RETENTION_SECONDS = 400 * 86400  # fleet totals per day are kept this long
SETTLE_REPLAY_SECONDS = 10.0  # a settle repeated within this long (same request id) is applied once
SWEEP_SECONDS = 60.0  # counters of ended windows are forgotten this often (memory only: Redis expires its keys)
# Charge, Reserved, Totals and Settlement are made for every budgeted request and never changed once made: plain
# dataclasses, since a frozen one's __init__ sets each field through object.__setattr__ (3.5x the time).


class StoreUnavailable(Exception):
    """The shared store cannot be reached; str() is a message fit for a client. `attempted`: the call
    went out and may have taken effect (a reservation may hold until it is settled or dies)."""

    def __init__(self, message: str, *, attempted: bool = False) -> None:
        super().__init__(message)
        self.attempted = attempted


@dataclass(slots=True)
class Charge:
    counter: str  # e.g. "usd:day:20250102:team:support"
    amount: int  # to hold now
    limit: int | None  # refuse when used + held + amount would pass it; None: count, never refuse
    ttl: int  # seconds the counter must outlive now (its window's end plus the longest hold)


@dataclass(slots=True)
class Reserved:
    ok: bool
    levels: tuple[int, ...]  # used + live holds of each counter, before this reservation
    refused: int | None = None  # index of the first charge that did not fit


@dataclass(slots=True)
class Totals:
    """One request's share of the fleet spend totals (same columns as the ledger's spend rows)."""

    day: str  # UTC, 2025-01-02
    model: str
    team: str | None
    key: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int
    reasoning_tokens: int
    cost_nanos: int | None  # None: unpriced
    cache_write_tokens: int = 0
    request: bool = True  # False: a billed failed attempt of a request, whose tokens and dollars count, not itself

    def group(self) -> tuple[str, str, str, str]:
        """Whose totals: (day, model, team, key); requests of one group add up before they are spelled out."""
        return self.day, self.model, self.team or "", self.key or ""

    def amounts(self) -> tuple[int, ...]:
        """The request's amounts, in SPEND_METRICS order."""
        return (int(self.request), self.prompt_tokens, self.completion_tokens, self.cached_prompt_tokens,
                self.cache_write_tokens, self.reasoning_tokens, self.cost_nanos or 0,
                int(self.request and self.cost_nanos is None))

    def increments(self) -> dict[str, int]:
        return total_increments(self.group(), self.amounts())


def total_increments(group: tuple[str, str, str, str], amounts) -> dict[str, int]:
    """Field -> increment of the day's totals: `metric|dimension|value` (value last: it may hold '|'), for the
    amounts (in SPEND_METRICS order, none negative) of one group (Totals.group)."""
    day, model, team, key = group
    dimensions = {"model": model, "team": team, "key": key, "day": day}
    return {f"{metric}|{dim}|{value}": amount
            for metric, amount in zip(SPEND_METRICS, amounts) if amount for dim, value in dimensions.items()}


@dataclass(slots=True)
class Settlement:
    id: str  # the request id
    at: float  # when it was settled
    counters: tuple[tuple[str, int, int], ...]  # (counter, actual amount, ttl)
    totals: Totals | None = None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    team: str
    sha256: str
    created_at: float
    revoked_at: float | None = None
    budget_nanos_per_day: int | None = None
    source: str = "store"  # store | config
    tags: tuple[str, ...] = ()  # default tags of every request made with it


@dataclass(frozen=True, slots=True)
class Health:
    backend: str
    reachable: bool
    pending_settlements: int = 0  # settled while the store was down, written when it returns


class Store(Protocol):
    backend: str
    shared: bool  # replicas see one another's counters, totals and keys

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def flush(self) -> None:
        """Writes what this replica settled (Redis: the batch on its way) if the store is up; never raises."""
    def health(self) -> Health: ...

    async def reserve(self, hold_id: str, charges: tuple[Charge, ...], now: float, hold_until: float) -> Reserved:
        """All or nothing; raises StoreUnavailable."""

    async def release(self, hold_id: str, counters: Iterable[str]) -> None:
        """Drops the holds; raises StoreUnavailable (the holds then die at their deadline)."""

    async def settle(self, settlement: Settlement) -> None:
        """Records the settlement in process, never waiting on I/O (Redis: written in batches), and never
        loses it: a shared store that is down keeps it and writes it on its return."""

    def on_settled(self, listener: Callable[[str, int], None]) -> None:
        """listener(counter, settled) whenever the store learns what a counter has settled: in process at each
        settle (memory), or as Redis holds it, every replica's batches included, each time this replica writes
        a batch or renews a lease (Redis). Called on the event loop; it must not block."""

    async def spend(self, by: str, days: list[str]) -> list[dict]: ...

    async def add_key(self, record: KeyRecord) -> bool:
        """False when the id is taken (by a live or a revoked key)."""

    async def key_by_hash(self, sha256: str) -> KeyRecord | None: ...
    async def keys(self) -> list[KeyRecord]: ...
    async def revoke_key(self, key_id: str, at: float) -> KeyRecord | None: ...

    async def mark_once(self, name: str, ttl_seconds: int) -> bool:
        """True for the first caller (fleet-wide on a shared store) until the mark expires; raises StoreUnavailable."""

    async def put_note(self, name: str, text: str, ttl_seconds: int) -> None:
        """Keeps a small text (a Batch API job's record) for any replica to read; raises StoreUnavailable."""

    async def get_note(self, name: str) -> str | None: ...


async def fleet_spend(store: Store, by: str, since: float | None, now: float) -> tuple[list[dict], float]:
    """Spend rows from the store's daily totals: whole UTC days, from the one holding `since` (default:
    all that are kept) to today. Returns the rows and the start of the first day counted."""
    if by not in SPEND_DIMENSIONS:
        raise ValueError(f"fleet totals group spend by {', '.join(SPEND_DIMENSIONS)}, not {by!r}")
    first = max(since if since is not None else 0.0, now - SPEND_RETENTION_SECONDS) // 86400 * 86400
    days = [time.strftime("%Y-%m-%d", time.gmtime(day)) for day in range(int(first), int(now) + 1, 86400)]
    return await store.spend(by, days), first


def spend_rows(by: str, day_totals: Iterable[dict[str, int]]) -> list[dict]:
    """Sum days of totals into rows shaped like the ledger's spend rows, ordered the same way."""
    rows: dict[str, dict] = defaultdict(lambda: dict.fromkeys(SPEND_METRICS, 0))
    for totals in day_totals:
        for field, amount in totals.items():
            metric, dim, value = field.split("|", 2)
            if dim == by:
                rows[value][metric] += int(amount)
    out = [{by: value or None, **sums} for value, sums in rows.items()]
    out.sort(key=lambda row: (-row["cost_nanos"], -row["requests"], row[by] or ""))
    return out
