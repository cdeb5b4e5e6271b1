"""The near-miss guard: a question matches a stored one only if the words that flip an answer agree.

Embeddings score near misses like paraphrases ("turn on dark mode" / "turn off dark mode": 0.95), so
a threshold alone cannot tell them apart. Beside the similarity, a match must pass these checks:
  negation   both are negated, or neither ("I want to cancel" / "I don't want to cancel");
  opposite   neither says one side of a pair the other says the opposite of (on/off, add/remove, ...);
  number     the same numbers, as digits, words, ordinals or roman numerals ("5 days" / "five days");
  name       each name in one (a capitalised word, an acronym, a word with digits, a known country,
             city, language, element, ...) is a word of the other; two or more in the same order;
  unit       the same units in the same order, when both name one ("km to miles" / "miles to km");
  direction  "from A to B" is not "from B to A" ("from savings to checking").
The checks err towards refusing: a refused paraphrase costs one upstream call, a wrong answer more.
"""

import re
from dataclasses import dataclass

from proxy.lookup.words import NAMES, NEGATIONS, NUMBER_WORDS, OPPOSITES, ORDINAL_WORDS, ROMAN_NUMERALS, UNITS

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['’\-_.][A-Za-z0-9]+)*")
_SENTENCE_END = re.compile(r"[.!?:]\s+")
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_ORDINAL_DIGITS = re.compile(r"(\d+)(?:st|nd|rd|th)")
_DIRECTION = re.compile(r"\bfrom\s+(?:(?:the|my|a|an|your)\s+)?(\w+).*?\bto\s+(?:(?:the|my|a|an|your)\s+)?(\w+)")


@dataclass(frozen=True, slots=True)
class Facts:
    words: frozenset[str]  # lower case, possessives and apostrophes dropped, plurals as singular
    negated: bool
    sides: tuple[frozenset[int], ...]  # per opposite pair: which sides (0, 1) the text says
    numbers: frozenset[str]
    names: tuple[str, ...]  # in order of appearance
    units: tuple[str, ...]
    direction: tuple[str, str] | None


def facts(text: str) -> Facts:
    words, names, units, numbers = [], [], [], set()
    for sentence in _SENTENCE_END.split(text):
        for position, token in enumerate(_TOKEN.findall(sentence)):
            word = _plain(token)
            words.append(word)
            number = _number(word, token)
            if number is not None:
                numbers.add(number)
            elif word in UNITS:
                units.append(_singular(word))
            elif _is_name(token, word, first=position == 0):
                names.append(_singular(word))
    bag = frozenset(words)
    sides = tuple(frozenset(side for side, group in enumerate(pair) if not group.isdisjoint(bag)) for pair in OPPOSITES)
    direction = _DIRECTION.search(text.lower())
    return Facts(frozenset(map(_singular, words)), sum(w in NEGATIONS for w in words) % 2 == 1, sides,
                 frozenset(numbers), tuple(dict.fromkeys(names)), tuple(dict.fromkeys(units)),
                 direction.groups() if direction else None)


def refusal(new: Facts, stored: Facts) -> str | None:
    """Why the new question must not be answered with the stored one's answer, or None when it may."""
    if new.negated != stored.negated:
        return "negation"
    for ours, theirs in zip(new.sides, stored.sides):
        if ours and theirs and ours != theirs:
            return "opposite"
    if new.numbers != stored.numbers:
        return "number"
    if any(name not in stored.words for name in new.names) or any(name not in new.words for name in stored.names):
        return "name"
    if _ordered(new.names, stored.names):
        return "name_order"
    if new.units and stored.units and new.units != stored.units:
        return "unit"
    if new.direction and stored.direction and new.direction == stored.direction[::-1] != stored.direction:
        return "direction"
    return None


def _ordered(ours: tuple[str, ...], theirs: tuple[str, ...]) -> bool:
    """True when two or more shared names come in another order."""
    shared = [name for name in ours if name in theirs]
    return len(shared) > 1 and shared != [name for name in theirs if name in ours]


def _plain(token: str) -> str:
    word = token.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    return word.replace("'", "")  # don't -> dont, as NEGATIONS spells it


def _singular(word: str) -> str:
    """Enough to match "PDF" with "PDFs": a trailing s goes, on both sides alike."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _number(word: str, token: str) -> str | None:
    if _DIGITS.fullmatch(word):
        value = word.replace(",", "")
        return value.rstrip("0").rstrip(".") if "." in value else value.lstrip("0") or "0"
    ordinal = _ORDINAL_DIGITS.fullmatch(word)
    if ordinal:
        return str(int(ordinal.group(1)))
    if token.isupper() and word in ROMAN_NUMERALS:
        return ROMAN_NUMERALS[word]
    return NUMBER_WORDS.get(word) or ORDINAL_WORDS.get(word)


def _is_name(token: str, word: str, *, first: bool) -> bool:
    if word in NAMES:
        return True
    if any(c.isdigit() for c in token):
        return True  # gpt-4o, iphone15, v2
    if len(token) > 1 and token.isupper():
        return True  # an acronym: AWS, VPN
    # A capital inside a sentence marks a name; at its start it only marks the sentence.
    return not first and token[0].isupper() and word != "i"
