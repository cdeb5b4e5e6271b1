"""Lookup precision on real pairs the guard never saw: the test part of the QQP split (bench/qqp.py).

    python bench/lookup_quality.py                          # the figures in docs/lookup.md (~1 min)
    python bench/lookup_quality.py --part validate          # the same on the part the choices were made on
    python bench/lookup_quality.py --cross-encoder DIR      # and a local cross-encoder as the verifier
                                                            # (bench/lookup_cross_encoder.py trains one)

A cache of N stored questions (the first question of N pairs), each second question asked; a hit is right when
it is the asked question's own pair and that pair is labelled duplicate. For the shipped guard model at three
operating points (max_wrong_rate, whose threshold comes from the validate part): precision with its 95% Wilson
interval, duplicate hit rate and hit counts; beside it plain cosine (the nearest stored question, no checks)
and every hand-written check (the guard before #15) at the same duplicate hit rate.
Verifying: candidates between verify.min_similarity and the operating threshold go to a verifier. A local
cross-encoder is measured; an oracle (the human label) is SIMULATED: it shows the most verifying can add.
Costs: the guard's CPU per lookup, a verifier's tokens (gpt-4o-mini prompt, counted), the embedding per request.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import qqp  # noqa: E402
from proxy.accounting.pricing import PriceTable, default_pricing_path  # noqa: E402
from proxy.accounting.tokens import TokenCounter  # noqa: E402
from proxy.accounting.usage import Usage  # noqa: E402
from proxy.lookup import calibration, guard, verifier  # noqa: E402

RATES = (0.10, 0.15, 0.02)  # the default first
VERIFY_FROM = 0.80  # verify.min_similarity's default
VERIFIER_MODEL = "gpt-4o-mini"


def first_passing(lookup: qqp.Lookup, checks: tuple[str, ...]) -> tuple[str, float] | None:
    asked = guard.facts(lookup.pair.asked)
    for text, score in lookup.candidates:
        if guard.refusal(asked, guard.facts(text), checks) is None:
            return text, score
    return None


def right(lookup: qqp.Lookup, text: str) -> bool:
    return lookup.pair.duplicate and text == lookup.pair.stored


def at_hit_rate(lookups, candidates, target: float) -> qqp.Outcome:
    """The highest threshold (0.001 steps) whose duplicate hit rate reaches the target."""
    outcome = None
    for step in range(999, 500, -1):
        chosen = [c[0] if c and c[1] >= step / 1000 else None for c in candidates]
        outcome = qqp.served(lookups, chosen)
        if outcome.hit_rate >= target:
            break
    return outcome


def unlabelled(lookups, chosen) -> str:
    """Wrong hits come in two kinds: the asked question's own pair, labelled not duplicate; or another stored
    question, which no one labelled against it (many are paraphrases: QQP labels pairs, not clusters)."""
    own = sum(text == lookup.pair.stored and not lookup.pair.duplicate for lookup, text in zip(lookups, chosen))
    other = sum(text is not None and text != lookup.pair.stored for lookup, text in zip(lookups, chosen))
    right_hits = sum(text is not None and right(lookup, text) for lookup, text in zip(lookups, chosen))
    labelled = right_hits / max(right_hits + own, 1)
    return f"wrong: {own} own pair labelled not duplicate, {other} another stored question (unlabelled); " \
           f"precision on labelled hits only {labelled:.3f}"


def report(pairs: list[qqp.Pair], vectors, model: calibration.GuardModel, cross_encoder, min_score: float,
           tokens: TokenCounter, prices: PriceTable) -> None:
    lookups = qqp.cache_lookups(pairs, vectors)
    guarded = [first_passing(lookup, model.checks) for lookup in lookups]
    plain = [lookup.candidates[0] for lookup in lookups]
    every = [first_passing(lookup, tuple(guard.CHECKS)) for lookup in lookups]
    duplicates = sum(lookup.pair.duplicate for lookup in lookups)
    print(f"{len({p.stored for p in pairs})} stored questions, {len(lookups)} asked, {duplicates} duplicate pairs")
    for rate in RATES:
        point = calibration.operating_point(model.curve, rate, "shipped")
        chosen = [c[0] if c and c[1] >= point.threshold else None for c in guarded]
        outcome = qqp.served(lookups, chosen)
        print(f"  max_wrong_rate {rate} -> threshold {point.threshold} (validate: {point.expected.precision:.3f} / "
              f"{point.expected.hit_rate:.1%})")
        print(f"    guard model      {outcome.describe()}\n                     {unlabelled(lookups, chosen)}")
        print(f"    plain cosine     {at_hit_rate(lookups, plain, outcome.hit_rate).describe()}")
        print(f"    every check      {at_hit_rate(lookups, every, outcome.hit_rate).describe()}")
    strict = calibration.operating_point(model.curve, 0.02, "shipped").threshold
    band = [i for i, c in enumerate(guarded) if c and VERIFY_FROM <= c[1] < strict]
    print(f"  verifying candidates in [{VERIFY_FROM}, {strict}) (max_wrong_rate 0.02): {len(band)} of "
          f"{len(lookups)} lookups ({len(band) / len(lookups):.1%}) ask the verifier")
    direct = {i for i, c in enumerate(guarded) if c and c[1] >= strict}

    def verified(says_same) -> qqp.Outcome:
        chosen = [c[0] if c and (i in direct or (i in band_set and says_same[i])) else None
                  for i, c in enumerate(guarded)]
        return qqp.served(lookups, chosen)

    band_set = set(band)
    oracle = {i: right(lookups[i], guarded[i][0]) for i in band}
    print(f"    oracle verifier (SIMULATED: the human label)   {verified(oracle).describe()}")
    print(f"      (its wrong hits are the direct ones, above {strict}; a verifier that also judged those, when: always:"
          f" {qqp.served(lookups, [c[0] if c and c[1] >= VERIFY_FROM and right(lookups[i], c[0]) else None for i, c in enumerate(guarded)]).describe()})")
    if cross_encoder is not None:
        import torch

        started = time.process_time()
        scores = cross_encoder.predict([(lookups[i].pair.asked, guarded[i][0]) for i in band], batch_size=32,
                                       activation_fn=torch.nn.Sigmoid(), show_progress_bar=False)
        cpu = (time.process_time() - started) / max(len(band), 1) * 1000
        for cut in sorted({min_score, 0.5, 0.7, 0.8}):
            measured = {i: float(s) >= cut for i, s in zip(band, scores)}
            print(f"    local cross-encoder, min_score {cut:<4} (measured) {verified(measured).describe()}")
        print(f"    cross-encoder CPU per verification: {cpu:.1f} ms (batched 32; one at a time costs more)")
    prompts = [tokens.for_model(VERIFIER_MODEL).chat([
        {"role": "system", "content": verifier.INSTRUCTIONS},
        {"role": "user", "content": verifier.prompt(lookups[i].pair.asked, guarded[i][0])}]) for i in band]
    if prompts:
        mean = statistics.mean(prompts)
        cost = prices.cost_nanos(VERIFIER_MODEL, Usage(prompt_tokens=round(mean), completion_tokens=1)) or 0
        print(f"    {VERIFIER_MODEL} as verifier: {mean:.0f} prompt tokens + 1 per verification "
              f"(${cost / 1e9:.8f}); {mean * len(band) / len(lookups):.1f} prompt tokens per lookup on average")


def guard_cpu(pairs: list[qqp.Pair], vectors, checks: tuple[str, ...]) -> None:
    """Per lookup: the facts of the asked question and of its 5 candidates (cold), and the checks."""
    lookups = qqp.cache_lookups(pairs, vectors)
    timings = []
    for lookup in lookups:
        guard._remembered_facts.cache_clear()
        started = time.perf_counter()
        asked = guard.facts(lookup.pair.asked)
        for text, _ in lookup.candidates:
            guard.refusal(asked, guard.facts(text), checks)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    print(f"guard CPU per lookup (5 candidates, nothing remembered): median {statistics.median(timings):.3f} ms, "
          f"p99 {timings[int(len(timings) * 0.99)]:.3f} ms (shared 2-core machine: indicative)")


def embedding_cost(pairs: list[qqp.Pair], tokens: TokenCounter, prices: PriceTable) -> None:
    counts = [tokens.for_model("text-embedding-3-small").text(p.asked) for p in pairs]
    mean = statistics.mean(counts)
    cost = prices.cost_nanos("text-embedding-3-small", Usage(prompt_tokens=round(mean))) or 0
    print(f"embedding per request: local all-MiniLM-L6-v2 $0 (~14 ms CPU, bench/lookup.py); text-embedding-3-small "
          f"{mean:.1f} tokens on average, ${cost / 1e9:.9f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="test", choices=["test", "validate"])
    parser.add_argument("--sizes", type=int, nargs="*", default=[600, 2000], help="stored questions")
    parser.add_argument("--cross-encoder", help="a CrossEncoder directory to measure as the local verifier")
    parser.add_argument("--min-score", type=float, default=0.5, help="the cross-encoder's cut (choose on validate)")
    args = parser.parse_args()
    parts = qqp.parts()
    vectors = qqp.embeddings([t for part in parts.values() for p in part for t in (p.stored, p.asked)])
    model = calibration.load(calibration.SHIPPED)
    cross_encoder = None
    if args.cross_encoder:
        import torch
        from sentence_transformers import CrossEncoder

        torch.set_num_threads(2)
        cross_encoder = CrossEncoder(args.cross_encoder, device="cpu", local_files_only=True)
    tokens, prices = TokenCounter(), PriceTable.load([default_pricing_path()], {})
    pairs = parts[args.part]
    print(f"QQP {args.part} part, all-MiniLM-L6-v2, guard model {model.path} (checks: {', '.join(model.checks)})")
    for size in args.sizes:
        if size > len(pairs):
            print(f"({size} stored: the {args.part} part has {len(pairs)} pairs)")
            continue
        print()
        report(pairs[:size], vectors, model, cross_encoder, args.min_score, tokens, prices)
    print()
    guard_cpu(pairs[:600], vectors, model.checks)
    embedding_cost(pairs, tokens, prices)


if __name__ == "__main__":
    main()
