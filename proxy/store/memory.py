"""The in-process store: one replica's counters, totals and keys, in dicts.

Atomic because nothing here awaits: a reserve checks and holds with no other request in between.
Counters, holds and settled marks are dropped once past their time, so memory stays bounded.
"""

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from proxy.store import (SETTLE_REPLAY_SECONDS, SPEND_RETENTION_SECONDS, SWEEP_SECONDS, Charge, Health, KeyRecord,
                         Reserved, Settlement, spend_rows)
from proxy.store.holds import Holds, RecentIds


@dataclass(slots=True)
class _Counter:
    expires_at: float
    used: int = 0
    holds: Holds = field(default_factory=Holds)


class MemoryStore:
    backend = "memory"
    shared = False

    def __init__(self) -> None:
        self._counters: dict[str, _Counter] = {}
        self._settled = RecentIds(SETTLE_REPLAY_SECONDS)
        self._spend: dict[str, Counter] = {}  # day -> field -> amount
        self._keys: dict[str, KeyRecord] = {}
        self._key_ids_by_hash: dict[str, str] = {}
        self._next_sweep = 0.0
        self._marks: dict[str, float] = {}  # mark_once: name -> when it expires
        self._notes: dict[str, tuple[str, float]] = {}  # put_note: name -> (text, when it expires)
        self._on_settled: Callable[[str, int], None] | None = None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def flush(self) -> None:
        pass  # settled in place

    def health(self) -> Health:
        return Health(self.backend, reachable=True)

    async def reserve(self, hold_id: str, charges: tuple[Charge, ...], now: float, hold_until: float) -> Reserved:
        self._sweep(now)
        counters = [self._counter(charge, now) for charge in charges]
        levels = []
        refused = None
        for index, (charge, counter) in enumerate(zip(charges, counters)):
            counter.holds.drop_dead(now)
            level = counter.used + counter.holds.held - counter.holds.own(hold_id)
            levels.append(level)
            if refused is None and charge.limit is not None and level + charge.amount > charge.limit:
                refused = index
        if refused is not None:
            return Reserved(False, tuple(levels), refused)
        for charge, counter in zip(charges, counters):
            counter.holds.hold(hold_id, charge.amount, hold_until)
        return Reserved(True, tuple(levels))

    def on_settled(self, listener: Callable[[str, int], None]) -> None:
        self._on_settled = listener

    async def release(self, hold_id: str, counters: Iterable[str]) -> None:
        for name in counters:
            counter = self._counters.get(name)
            if counter is not None:
                counter.holds.drop(hold_id)

    async def settle(self, settlement: Settlement) -> None:
        now = settlement.at
        if not self._settled.add(settlement.id, now):
            return  # a repeat
        for name, actual, ttl in settlement.counters:
            counter = self._counters.get(name)
            if counter is None:
                if not actual:
                    continue
                counter = self._counters[name] = _Counter(now + ttl)
            counter.holds.drop(settlement.id)
            counter.used += actual
            if self._on_settled is not None:
                self._on_settled(name, counter.used)
        if settlement.totals is not None:
            self._spend.setdefault(settlement.totals.day, Counter()).update(settlement.totals.increments())

    async def spend(self, by: str, days: list[str]) -> list[dict]:
        return spend_rows(by, (self._spend[day] for day in days if day in self._spend))

    async def add_key(self, record: KeyRecord) -> bool:
        if record.id in self._keys:
            return False
        self._keys[record.id] = record
        self._key_ids_by_hash[record.sha256] = record.id
        return True

    async def key_by_hash(self, sha256: str) -> KeyRecord | None:
        key_id = self._key_ids_by_hash.get(sha256)
        return None if key_id is None else self._keys[key_id]

    async def keys(self) -> list[KeyRecord]:
        return list(self._keys.values())

    async def revoke_key(self, key_id: str, at: float) -> KeyRecord | None:
        record = self._keys.get(key_id)
        if record is not None and record.revoked_at is None:
            record = self._keys[key_id] = replace(record, revoked_at=at)
        return record

    async def mark_once(self, name: str, ttl_seconds: int) -> bool:
        now = time.time()
        if self._marks.get(name, 0.0) > now:
            return False
        self._marks = {mark: until for mark, until in self._marks.items() if until > now}  # few: one per alert
        self._marks[name] = now + ttl_seconds
        return True

    async def put_note(self, name: str, text: str, ttl_seconds: int) -> None:
        now = time.time()
        self._notes = {note: kept for note, kept in self._notes.items() if kept[1] > now}
        self._notes[name] = (text, now + ttl_seconds)

    async def get_note(self, name: str) -> str | None:
        text, until = self._notes.get(name, (None, 0.0))
        return text if until > time.time() else None

    def _counter(self, charge: Charge, now: float) -> _Counter:
        counter = self._counters.get(charge.counter)
        if counter is None:
            counter = self._counters[charge.counter] = _Counter(now + charge.ttl)
        else:
            counter.expires_at = max(counter.expires_at, now + charge.ttl)
        return counter

    def _sweep(self, now: float) -> None:
        """Drops counters past their window, at most once a minute."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        self._counters = {name: c for name, c in self._counters.items() if c.expires_at > now}
        oldest = time.strftime("%Y-%m-%d", time.gmtime(now - SPEND_RETENTION_SECONDS))
        self._spend = {day: totals for day, totals in self._spend.items() if day >= oldest}
