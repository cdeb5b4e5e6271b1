"""One counter's live holds (reservations): amounts by hold id, dropped at their deadline.

Shared by the in-process store and the Redis store's local lease book: both hold reservations in
process memory, with no await between checking and holding.
"""

import heapq
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class Holds:
    held: int = 0
    by_id: dict[str, tuple[int, float]] = field(default_factory=dict)  # hold id -> (amount, deadline)
    deadlines: list[tuple[float, str]] = field(default_factory=list)  # heap, to drop dead holds in order

    def own(self, hold_id: str) -> int:
        """What this id holds here already (a reservation made again under the same id replaces it)."""
        hold = self.by_id.get(hold_id)
        return 0 if hold is None else hold[0]

    def drop_dead(self, now: float) -> None:
        while self.deadlines and self.deadlines[0][0] <= now:
            deadline, hold_id = heapq.heappop(self.deadlines)
            hold = self.by_id.get(hold_id)
            if hold is not None and hold[1] == deadline:
                del self.by_id[hold_id]
                self.held -= hold[0]

    def drop(self, hold_id: str) -> None:
        hold = self.by_id.pop(hold_id, None)
        if hold is None:
            return
        self.held -= hold[0]  # its heap entry is skipped when it comes up, or dropped when the heap is rebuilt
        if len(self.deadlines) > 2 * len(self.by_id) + 64:
            self.deadlines = [(deadline, hold_id) for hold_id, (_, deadline) in self.by_id.items()]
            heapq.heapify(self.deadlines)

    def hold(self, hold_id: str, amount: int, deadline: float) -> None:
        self.drop(hold_id)
        self.by_id[hold_id] = (amount, deadline)
        self.held += amount
        heapq.heappush(self.deadlines, (deadline, hold_id))


class RecentIds:
    """Ids seen in the last `seconds`, forgotten in arrival order: memory stays proportional to the
    rate times the window, never to the traffic so far."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._seen: set[str] = set()
        # Arrival order apart from the set: a dict emptied from its front is not, as next(iter(...)) then
        # walks every deleted slot before the first live one, on every add, until the dict is resized.
        self._expiries: deque[tuple[float, str]] = deque()

    def add(self, item: str, now: float) -> bool:
        """False when the id was seen within the window (a repeat)."""
        expiries, seen = self._expiries, self._seen
        while expiries and expiries[0][0] <= now:
            seen.discard(expiries.popleft()[1])
        if item in seen:
            return False
        seen.add(item)
        expiries.append((now + self._seconds, item))
        return True

    def __len__(self) -> int:
        return len(self._seen)
