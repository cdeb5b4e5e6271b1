"""Vector search: brute force, and the move to an HNSW graph built off the loop while changes go on."""

import asyncio

import numpy as np
import pytest

from proxy.lookup.index import BruteForce, Hnsw, VectorIndex

DIM = 32


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_brute_force_finds_the_nearest_and_forgets_removed_ones() -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng, 40)
    index = BruteForce(DIM)
    for i, vector in enumerate(vectors):
        index.add(f"e{i}", vector)
    assert index.search(vectors[7], 3)[0] == ("e7", pytest.approx(1.0, abs=1e-5))
    index.remove("e7")
    index.remove("e0")  # the last row moves into its hole
    assert len(index) == 38 and all(hit[0] not in ("e7", "e0") for hit in index.search(vectors[7], 40))
    assert index.search(vectors[39], 1)[0][0] == "e39"


def test_hnsw_scores_like_brute_force() -> None:
    rng = np.random.default_rng(2)
    vectors = unit(rng, 200)
    graph = Hnsw(DIM, [f"e{i}" for i in range(200)], vectors)
    entry, score = graph.search(vectors[5], 1)[0]
    assert entry == "e5" and abs(score - 1.0) < 1e-5
    graph.remove("e5")
    assert graph.search(vectors[5], 1)[0][0] != "e5"


async def test_a_growing_partition_moves_to_a_graph_without_losing_changes_made_meanwhile() -> None:
    rng = np.random.default_rng(3)
    vectors = unit(rng, 120)
    index = VectorIndex(DIM, ann_floats=100 * DIM)
    for i in range(100):
        index.add(f"e{i}", vectors[i])  # the 100th starts the build
    for i in range(100, 120):
        index.add(f"e{i}", vectors[i])  # while the graph is built: brute force answers, the journal keeps these
    index.remove("e3")
    for _ in range(500):
        if index.uses_graph:
            break
        await asyncio.sleep(0.01)
    assert index.uses_graph and len(index) == 119
    assert index.search(vectors[110], 1)[0][0] == "e110"
    assert all(hit[0] != "e3" for hit in index.search(vectors[3], 5))

