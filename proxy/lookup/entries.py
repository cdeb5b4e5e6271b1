"""Stored answers: the Entry, its wire form, and the in-process entry store.

An entry belongs to an owner (the cache policy that wrote it, or `answers` for operator-loaded
answers), a tenant scope and a partition: everything but the question that shapes its answer, hashed
(proxy.lookup.canonical). A semantic search only looks inside the request's own partition, so what
it finds was asked in the same scope, of the same model, after the same conversation. An entry read
back that does not decode, or that is not what was asked for, is never served: it is counted and
skipped. Both stores (this one and proxy/store/lookup_redis.py) pass tests/lookup/test_entry_stores.py.
"""

import base64
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from proxy.lookup.index import VectorIndex

FORMAT = 1
KINDS = ("exact", "semantic", "answer")
ANSWERS_OWNER = "answers"
Ignored = Callable[[str], None]  # told "corrupt" or "foreign" for each entry read back and skipped


class LookupUnavailable(Exception):
    """The entry store cannot be reached: the lookup is a miss, the request goes upstream."""


@dataclass(frozen=True, slots=True, eq=False)
class Entry:
    id: str
    kind: str  # exact | semantic | answer
    owner: str
    scope: str  # team:NAME | key:ID | global
    partition: str
    question: str  # "" for exact entries
    vector: np.ndarray | None  # unit length; None for exact entries
    model: str  # as the answer named it
    choices: list[dict[str, Any]]  # chat choices, as the upstream sent them (one)
    completion_tokens: int | None  # of the stored answer; None: not known (loaded answers are counted when served)
    created: float
    expires: float | None

    def expired(self, now: float) -> bool:
        return self.expires is not None and self.expires <= now

    def text(self) -> str:
        message = self.choices[0].get("message") or {}
        return message.get("content") or ""


def encode(entry: Entry) -> bytes:
    vector = None if entry.vector is None else base64.b64encode(entry.vector.astype("<f4").tobytes()).decode()
    return orjson.dumps({
        "format": FORMAT, "id": entry.id, "kind": entry.kind, "owner": entry.owner, "scope": entry.scope,
        "partition": entry.partition, "question": entry.question, "vector": vector, "model": entry.model,
        "choices": entry.choices, "completion_tokens": entry.completion_tokens, "created": entry.created,
        "expires": entry.expires,
    })


def decode(raw: bytes | str) -> Entry | None:
    """None for anything that is not an entry this version wrote whole."""
    try:
        data = orjson.loads(raw)
        if data["format"] != FORMAT or data["kind"] not in KINDS:
            return None
        vector = data["vector"]
        if vector is not None:
            vector = np.frombuffer(base64.b64decode(vector, validate=True), dtype="<f4").astype(np.float32)
            if not vector.size or not np.isfinite(vector).all():
                return None
        choices = data["choices"]
        if not (isinstance(choices, list) and len(choices) == 1 and isinstance(choices[0], dict)):
            return None
        entry = Entry(
            id=_str(data["id"]), kind=data["kind"], owner=_str(data["owner"]), scope=_str(data["scope"]),
            partition=_str(data["partition"]), question=_str(data["question"]), vector=vector,
            model=_str(data["model"]), choices=choices, completion_tokens=_optional_int(data["completion_tokens"]),
            created=float(data["created"]), expires=None if data["expires"] is None else float(data["expires"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return entry if (entry.vector is None) == (entry.kind == "exact") else None


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _optional_int(value: Any) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise TypeError("expected a count")
    return value


class EntryStore(Protocol):
    shared: bool  # replicas see one another's entries

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def get(self, entry_id: str, now: float) -> Entry | None: ...

    async def nearest(self, partition: str, vector: np.ndarray, k: int, now: float) -> list[tuple[Entry, float]]:
        """The k most similar live entries of the partition, most similar first."""

    async def put(self, entry: Entry, max_entries: int, now: float) -> None:
        """Store (or replace) it; past max_entries of its owner, the entries closest to expiry go."""

    async def delete_scope(self, scope: str) -> int: ...


class Partitions:
    """Local vector indexes, one per partition: what a semantic search looks through."""

    def __init__(self) -> None:
        self._indexes: dict[str, VectorIndex] = {}
        self._scope_of: dict[str, str] = {}  # partition -> scope
        self._partition_of: dict[str, str] = {}  # entry id -> partition

    def add(self, entry: Entry) -> None:
        self.remove(entry.id)
        index = self._indexes.get(entry.partition)
        if index is None:
            index = self._indexes[entry.partition] = VectorIndex(entry.vector.size)
            self._scope_of[entry.partition] = entry.scope
        elif index.dimensions != entry.vector.size:
            return  # written by another embedder under the same name: unusable here
        index.add(entry.id, entry.vector)
        self._partition_of[entry.id] = entry.partition

    def remove(self, entry_id: str) -> None:
        partition = self._partition_of.pop(entry_id, None)
        if partition is None:
            return
        index = self._indexes[partition]
        index.remove(entry_id)
        if not len(index):
            del self._indexes[partition], self._scope_of[partition]

    def search(self, partition: str, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        index = self._indexes.get(partition)
        if index is None or index.dimensions != vector.size:
            return []
        return index.search(vector, k)

    def drop_scope(self, scope: str) -> None:
        doomed = {partition for partition, owner in self._scope_of.items() if owner == scope}
        for partition in doomed:
            del self._indexes[partition], self._scope_of[partition]
        self._partition_of = {i: p for i, p in self._partition_of.items() if p not in doomed}

    def clear(self) -> None:
        self._indexes.clear()
        self._scope_of.clear()
        self._partition_of.clear()


class MemoryEntries:
    """One replica's entries, in dicts. Nothing awaits inside a method: each is atomic."""

    shared = False

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._by_owner: dict[str, OrderedDict[str, float]] = defaultdict(OrderedDict)  # id -> expiry, oldest first
        self._partitions = Partitions()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def get(self, entry_id: str, now: float) -> Entry | None:
        entry = self._entries.get(entry_id)
        if entry is not None and entry.expired(now):
            self._drop(entry)
            return None
        return entry

    async def nearest(self, partition: str, vector: np.ndarray, k: int, now: float) -> list[tuple[Entry, float]]:
        found = []
        for entry_id, similarity in self._partitions.search(partition, vector, k):
            entry = await self.get(entry_id, now)
            if entry is not None:
                found.append((entry, similarity))
        return found

    async def put(self, entry: Entry, max_entries: int, now: float) -> None:
        old = self._entries.get(entry.id)
        if old is not None:
            self._drop(old)
        self._entries[entry.id] = entry
        owned = self._by_owner[entry.owner]
        owned[entry.id] = entry.expires or float("inf")
        if entry.vector is not None:
            self._partitions.add(entry)
        # Entries of one owner share a TTL, so the oldest expire first: drop them, then any over the limit.
        while owned and (len(owned) > max_entries or next(iter(owned.values())) <= now):
            self._drop(self._entries[next(iter(owned))])

    async def delete_scope(self, scope: str) -> int:
        doomed = [entry for entry in self._entries.values() if entry.scope == scope]
        for entry in doomed:
            self._drop(entry)
        return len(doomed)

    def _drop(self, entry: Entry) -> None:
        del self._entries[entry.id]
        self._by_owner[entry.owner].pop(entry.id, None)
        self._partitions.remove(entry.id)
