"""The in-process store: one replica's counters, totals and keys, in dicts.

Atomic because nothing here awaits: a reserve checks and holds with no other request in between.
Counters, holds and settled marks are dropped once past their time, so memory stays bounded.
"""

import heapq
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from proxy.store import (SETTLED_MARK_SECONDS, SPEND_RETENTION_SECONDS, Charge, Health, KeyRecord, Reserved,
                         Settlement, spend_rows)

_SWEEP_SECONDS = 60.0


@dataclass(slots=True)
class _Counter:
    expires_at: float
    used: int = 0
    held: int = 0
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)  # hold id -> (amount, deadline)
    deadlines: list[tuple[float, str]] = field(default_factory=list)  # heap, to drop dead holds in order

    def drop_dead_holds(self, now: float) -> None:
        while self.deadlines and self.deadlines[0][0] <= now:
            deadline, hold_id = heapq.heappop(self.deadlines)
            hold = self.holds.get(hold_id)
            if hold is not None and hold[1] == deadline:
                del self.holds[hold_id]
                self.held -= hold[0]

    def drop_hold(self, hold_id: str) -> None:
        hold = self.holds.pop(hold_id, None)
        if hold is None:
            return
        self.held -= hold[0]  # its heap entry is skipped when it comes up, or dropped when the heap is rebuilt
        if len(self.deadlines) > 2 * len(self.holds) + 64:
            self.deadlines = [(deadline, hold_id) for hold_id, (_, deadline) in self.holds.items()]
            heapq.heapify(self.deadlines)


class MemoryStore:
    backend = "memory"
    shared = False

    def __init__(self) -> None:
        self._counters: dict[str, _Counter] = {}
        self._settled: dict[str, float] = {}  # request id -> when the mark may go
        self._spend: dict[str, Counter] = {}  # day -> field -> amount
        self._keys: dict[str, KeyRecord] = {}
        self._key_ids_by_hash: dict[str, str] = {}
        self._next_sweep = 0.0
        self._marks: dict[str, float] = {}  # mark_once: name -> when it expires
        self._notes: dict[str, tuple[str, float]] = {}  # put_note: name -> (text, when it expires)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def health(self) -> Health:
        return Health(self.backend, reachable=True)

    async def reserve(self, hold_id: str, charges: tuple[Charge, ...], now: float, hold_until: float) -> Reserved:
        self._sweep(now)
        counters = [self._counter(charge, now) for charge in charges]
        levels = []
        refused = None
        for index, (charge, counter) in enumerate(zip(charges, counters)):
            counter.drop_dead_holds(now)
            own = counter.holds.get(hold_id, (0, 0.0))[0]  # a hold this id has here already is replaced
            level = counter.used + counter.held - own
            levels.append(level)
            if refused is None and charge.limit is not None and level + charge.amount > charge.limit:
                refused = index
        if refused is not None:
            return Reserved(False, tuple(levels), refused)
        for charge, counter in zip(charges, counters):
            counter.drop_hold(hold_id)
            counter.holds[hold_id] = (charge.amount, hold_until)
            counter.held += charge.amount
            heapq.heappush(counter.deadlines, (hold_until, hold_id))
        return Reserved(True, tuple(levels))

    async def release(self, hold_id: str, counters: Iterable[str]) -> None:
        for name in counters:
            counter = self._counters.get(name)
            if counter is not None:
                counter.drop_hold(hold_id)

    async def settle(self, settlement: Settlement) -> None:
        now = settlement.at
        if settlement.id in self._settled:
            return
        self._settled[settlement.id] = now + SETTLED_MARK_SECONDS
        for name, actual, ttl in settlement.counters:
            counter = self._counters.get(name)
            if counter is None:
                if not actual:
                    continue
                counter = self._counters[name] = _Counter(now + ttl)
            counter.drop_hold(settlement.id)
            counter.used += actual
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
        """Drops counters past their window and old settled marks, at most once a minute."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_SECONDS
        self._counters = {name: c for name, c in self._counters.items() if c.expires_at > now}
        self._settled = {rid: until for rid, until in self._settled.items() if until > now}
        oldest = time.strftime("%Y-%m-%d", time.gmtime(now - SPEND_RETENTION_SECONDS))
        self._spend = {day: totals for day, totals in self._spend.items() if day >= oldest}
