"""Tokens per word from the ledger: per model family, and per language where clients sent a language tag.

A row counts when the ledger has its answer's words (whole text answers: proxy/accounting/language.py);
its visible output tokens (completion minus reasoning) are the provider's own count. Each language is
also set against English in the same family: how much more the same answer costs in it.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from proxy.accounting.model_families import family_name

ALL = "(all)"
UNTAGGED = "(untagged)"


@dataclass(slots=True)
class _Tally:
    answers: int = 0
    words: int = 0
    tokens: int = 0
    cost_nanos: int = 0


def tokens_per_word(rows: Iterable[dict]) -> list[dict]:
    tallies: dict[tuple[str, str], _Tally] = {}
    for row in rows:
        words = row.get("output_words")
        if not words or not row["completion_tokens"]:
            continue
        family = family_name(row["model"] or "")
        for language in (ALL, row.get("language") or UNTAGGED):
            tally = tallies.setdefault((language, family), _Tally())
            tally.answers += 1
            tally.words += words
            tally.tokens += row["completion_tokens"] - (row["reasoning_tokens"] or 0)
            tally.cost_nanos += row["cost_nanos"] or 0
    english_counts: dict[str, list[int]] = {}
    for (language, family), tally in tallies.items():
        if language.partition("-")[0] == "en":  # en, en-us, en-gb... together
            counts = english_counts.setdefault(family, [0, 0])
            counts[0] += tally.tokens
            counts[1] += tally.words
    english = {family: tokens / words for family, (tokens, words) in english_counts.items()}
    out = []
    for (language, family), tally in sorted(tallies.items(), key=lambda kv: (kv[0][0] != ALL, kv[0])):
        ratio = tally.tokens / tally.words
        out.append({"language": language, "family": family, "answers": tally.answers, "words": tally.words,
                    "output_tokens": tally.tokens, "tokens_per_word": round(ratio, 4),
                    "vs_english": round(ratio / english[family], 3) if family in english else None,
                    "cost_nanos": tally.cost_nanos})
    return out
