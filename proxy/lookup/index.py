"""Vector search over one partition's entries: numpy brute force while small, HNSW (usearch) past it.

Vectors are unit length, so the inner product is the cosine similarity. Brute force costs one
matrix-vector product: 0.05 ms at 1k x 384, 0.7 ms at 10k, 35 ms at 100k (bench/lookup.py), so past
ANN_FLOATS stored floats a partition moves to a usearch HNSW graph (0.5 ms at 100k). The graph is
built on a worker thread from a snapshot while brute force keeps answering; what changed meanwhile is
replayed onto it before it takes over. Small partitions stay numpy: an empty usearch index alone
takes ~57 kB, and most partitions (one per conversation context) hold a handful of entries.
"""

import asyncio

import numpy as np

ANN_FLOATS = 1 << 22  # 16 MB of float32: ~11k entries of 384 dimensions, ~2.7k of 1536
_OVERSAMPLE = 4  # HNSW recall is not 100%: ask for more than k, keep the best
_REPLAY_LIMIT = 1000  # changes made during a build replayed onto it on the loop (~1 ms each at 100k)


class BruteForce:
    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self._vectors = np.empty((16, dimensions), dtype=np.float32)
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, entry_id: str, vector: np.ndarray) -> None:
        row = self._rows.get(entry_id)
        if row is None:
            row = len(self._ids)
            if row == len(self._vectors):
                self._vectors = np.concatenate([self._vectors, np.empty_like(self._vectors)])
            self._ids.append(entry_id)
            self._rows[entry_id] = row
        self._vectors[row] = vector

    def remove(self, entry_id: str) -> None:
        row = self._rows.pop(entry_id, None)
        if row is None:
            return
        last = len(self._ids) - 1  # the last row moves into the hole: rows stay dense
        if row != last:
            moved = self._ids[last]
            self._ids[row], self._rows[moved] = moved, row
            self._vectors[row] = self._vectors[last]
        self._ids.pop()

    def search(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        count = len(self._ids)
        if not count:
            return []
        scores = self._vectors[:count] @ vector
        top = np.argpartition(-scores, k - 1)[:k] if count > k else np.arange(count)
        return sorted(((self._ids[i], float(scores[i])) for i in top), key=lambda hit: -hit[1])

    def items(self) -> tuple[list[str], np.ndarray]:
        return list(self._ids), self._vectors[: len(self._ids)].copy()


class Hnsw:
    """A usearch graph keyed by integer labels; labels map to entry ids."""

    def __init__(self, dimensions: int, ids: list[str], vectors: np.ndarray) -> None:
        from usearch.index import Index

        self.dimensions = dimensions
        self._index = Index(ndim=dimensions, metric="ip", dtype="f32", connectivity=16,
                            expansion_add=64, expansion_search=128)
        self._labels: dict[str, int] = {}
        self._ids: dict[int, str] = {}
        self._next = 0
        if ids:
            labels = np.arange(len(ids), dtype=np.uint64)
            self._index.add(labels, vectors)
            self._labels = {entry_id: i for i, entry_id in enumerate(ids)}
            self._ids = dict(enumerate(ids))
            self._next = len(ids)

    def __len__(self) -> int:
        return len(self._labels)

    def add(self, entry_id: str, vector: np.ndarray) -> None:
        self.remove(entry_id)
        label, self._next = self._next, self._next + 1
        self._index.add(label, vector)
        self._labels[entry_id], self._ids[label] = label, entry_id

    def remove(self, entry_id: str) -> None:
        label = self._labels.pop(entry_id, None)
        if label is not None:
            del self._ids[label]
            self._index.remove(label)

    def search(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        if not self._labels:
            return []
        found = self._index.search(vector, min(k * _OVERSAMPLE, len(self._labels)))
        hits = [(self._ids[int(label)], 1.0 - float(distance))  # usearch's "ip" distance is 1 - dot
                for label, distance in zip(found.keys, found.distances) if int(label) in self._ids]
        return hits[:k]


class VectorIndex:
    """One partition. Mutations and searches run on the event loop; only a graph build leaves it."""

    def __init__(self, dimensions: int, *, ann_floats: int = ANN_FLOATS) -> None:
        self.dimensions = dimensions
        self._ann_floats = ann_floats
        self._store: BruteForce | Hnsw = BruteForce(dimensions)
        self._journal: list[tuple[str, np.ndarray | None]] | None = None  # changes while a graph is built

    def __len__(self) -> int:
        return len(self._store)

    @property
    def uses_graph(self) -> bool:
        return isinstance(self._store, Hnsw)

    def add(self, entry_id: str, vector: np.ndarray) -> None:
        self._store.add(entry_id, vector)
        if self._journal is not None:
            self._journal.append((entry_id, vector))
        elif isinstance(self._store, BruteForce) and len(self._store) * self.dimensions >= self._ann_floats:
            self._start_graph()

    def remove(self, entry_id: str) -> None:
        self._store.remove(entry_id)
        if self._journal is not None:
            self._journal.append((entry_id, None))

    def search(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        return self._store.search(vector, k)

    def _start_graph(self) -> None:
        self._journal = []
        ids, vectors = self._store.items()
        build = asyncio.get_running_loop().run_in_executor(None, Hnsw, self.dimensions, ids, vectors)
        build.add_done_callback(self._graph_built)

    def _graph_built(self, build: asyncio.Future) -> None:
        if build.cancelled() or build.exception() is not None:
            self._journal = None
            return  # stays brute force; the next add tries again
        graph: Hnsw = build.result()
        journal, self._journal = self._journal or [], []
        if len(journal) > _REPLAY_LIMIT:
            # Too many to replay on the loop (a replica loading at start): on the thread, while the loop
            # keeps journaling what comes next. The graph is nobody else's until it takes over.
            catch_up = asyncio.get_running_loop().run_in_executor(None, _replay, graph, journal)
            catch_up.add_done_callback(self._graph_built)
            return
        self._store, self._journal = _replay(graph, journal), None


def _replay(graph: Hnsw, journal: list[tuple[str, np.ndarray | None]]) -> Hnsw:
    for entry_id, vector in journal:
        if vector is None:
            graph.remove(entry_id)
        else:
            graph.add(entry_id, vector)
    return graph
