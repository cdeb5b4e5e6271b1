"""The near-miss guard: a question matches a stored one only if the words that flip an answer agree.

Embeddings score near misses like paraphrases ("turn on dark mode" / "turn off dark mode": 0.95;
"caffeine in tea" / "caffeine in coffee": 0.86), so a threshold alone cannot tell them apart. Beside
the similarity, a match must pass these checks:
  negation      both are negated, or neither ("I want to cancel" / "I don't want to cancel");
  alternative   neither says one of a group of alternatives the other says another of (on/off,
                all/some, daily/weekly, where/when, ...);
  question      both ask "who", "how old", "how far" ... or neither ("What is the reef?" / "How old is
                the reef?"); "what is the age of" asks "how old";
  number        the same numbers, as digits, words, ordinals or roman numerals ("5 days" / "five days");
  name          each name in one (a capitalised word, an acronym, a word with digits, a known country,
                city, language, element, ...) is a word of the other;
  unit          the same units in the same order, when both name one ("km to miles" / "miles to km");
  substitution  the content words align: what one says and the other does not is only added detail on
                one side, never a word swapped for another ("lemon" / "lime"); spellings and synonyms
                count as the same word (proxy/lookup/synonyms.py);
  order         the content words both say come in the same order where it matters: around a "to",
                "from", "for", ... ("string to integer" / "integer to string"), or around the same verb
                ("can I claim my parents" / "can my parents claim me").
The checks err towards refusing: a refused paraphrase costs one upstream call, a wrong answer more.
"""

import functools
import os
import re
from dataclasses import dataclass

from proxy.lookup.synonyms import (
    CASED_SPELLINGS, DIRECTIONAL, FIRST_PERSON, FUNCTION_WORDS, PHRASES, SPELLINGS, SYNONYMS,
)
from proxy.lookup.words import (
    ALTERNATIVES, ATTRIBUTE_NOUNS, HOW_QUESTIONS, NAMES, NEGATIONS, NUMBER_WORDS, ORDINAL_WORDS, QUESTION_WORDS,
    ROMAN_NUMERALS, UNITS,
)

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['’\-_.][A-Za-z0-9]+)*")
_SENTENCE_END = re.compile(r"[.!?:]\s+")
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_ORDINAL_DIGITS = re.compile(r"(\d+)(?:st|nd|rd|th)")
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)([a-z]+)")  # 1gb, 5km: a number and its unit written together
_PHRASE = re.compile(r"\b(" + "|".join(map(re.escape, PHRASES)) + r")s?\b", re.IGNORECASE)  # time zone(s)
_PRONOUN_I = frozenset({"i", "im", "ive", "id", "ill"})
_DIRECTION, _ME = "->", "ME"
_NOT_CONTENT = frozenset({"", _DIRECTION, _ME})
_REMEMBERED_LENGTH = 300  # characters: 4096 remembered questions stay a few MB
_SHARED_PREFIX = 6  # "deductible" / "deduct", "dehydration" / "dehydrated": one word


@dataclass(frozen=True, slots=True)
class Facts:
    words: frozenset[str]  # lower case, possessives and apostrophes dropped, spellings unified; and singular
    negated: bool
    sides: tuple[frozenset[int], ...]  # per group of alternatives: which of them the text says
    asks: frozenset[str]  # "who", "how old", ...: "Who discovered it?", "How old is it?" are not "What is it?"
    numbers: tuple[str, ...]  # in order of appearance: 2 to the power of 10 is not 10 to the power of 2
    names: tuple[str, ...]  # in order of appearance
    units: tuple[str, ...]
    sequence: tuple[str, ...]  # every word: content words as their meaning, "->" for "to" and the like,
    # ME for "I", "me", "we", "us" (who does what to whom), "" for other words
    content: frozenset[str]  # the content words of the sequence


def facts(text: str) -> Facts:
    """Stored questions come back as candidates again and again: short ones are remembered."""
    return _remembered_facts(text) if len(text) <= _REMEMBERED_LENGTH else _facts(text)


@functools.lru_cache(maxsize=4096)
def _remembered_facts(text: str) -> Facts:
    return _facts(text)


def _facts(text: str) -> Facts:
    words, names, units, numbers, sequence, asks = [], [], [], [], [], set()
    text = _PHRASE.sub(lambda match: PHRASES[match.group(1).lower()], text)
    for sentence in _SENTENCE_END.split(text):
        previous = ""
        for position, token in enumerate(_TOKEN.findall(sentence)):
            word = _plain(token)
            if word in QUESTION_WORDS:
                asks.add(QUESTION_WORDS[word])
            elif previous == "how" and word in HOW_QUESTIONS:
                asks.add("how " + HOW_QUESTIONS[word])
            elif _singular(word) in ATTRIBUTE_NOUNS:
                asks.add("how " + ATTRIBUTE_NOUNS[_singular(word)])
            previous = word
            quantity = _QUANTITY.fullmatch(word)
            if quantity and quantity.group(2) in UNITS:
                numbers.append(_number(quantity.group(1), quantity.group(1)))
                units.append(_singular(quantity.group(2)))
                continue
            word = CASED_SPELLINGS.get(token) or SPELLINGS.get(word, word)
            acronym = len(token) > 1 and token.isupper()
            words.append(word)
            number = _number(word, token)
            if number is not None:
                numbers.append(number)
            elif word in UNITS:
                units.append(_singular(word))
            elif _is_name(token, word, first=position == 0):
                names.append(word if acronym else _singular(word))  # HTTPS is not the plural of HTTP
            if number is not None or word in UNITS or word in FUNCTION_WORDS or word in NEGATIONS:
                sequence.append(_DIRECTION if word in DIRECTIONAL else _ME if word in FIRST_PERSON else "")
            elif acronym:
                sequence.append(word)
            else:
                sequence.extend(_meaning(part) for part in word.split("-"))  # jump-start, cruelty-free
        sequence.append("")
    bag = frozenset(words)
    return Facts(
        words=frozenset(words) | frozenset(map(_singular, words)), negated=sum(w in NEGATIONS for w in words) % 2 == 1,
        sides=tuple(frozenset(i for i, side in enumerate(group) if not side.isdisjoint(bag)) for group in ALTERNATIVES),
        asks=frozenset(asks), numbers=tuple(dict.fromkeys(numbers)),
        names=tuple(dict.fromkeys(names)), units=tuple(dict.fromkeys(units)), sequence=tuple(sequence),
        content=frozenset(sequence) - _NOT_CONTENT,
    )


def _negation(new: Facts, stored: Facts) -> bool:
    return new.negated != stored.negated


def _alternative(new: Facts, stored: Facts) -> bool:
    return any(ours and theirs and ours != theirs for ours, theirs in zip(new.sides, stored.sides))


def _question(new: Facts, stored: Facts) -> bool:
    return new.asks != stored.asks


def _number(new: Facts, stored: Facts) -> bool:
    return new.numbers != stored.numbers


def _name(new: Facts, stored: Facts) -> bool:
    return any(name not in stored.words for name in new.names) or any(name not in new.words for name in stored.names)


def _unit(new: Facts, stored: Facts) -> bool:
    return bool(new.units and stored.units and new.units != stored.units)


def _substitution(new: Facts, stored: Facts) -> bool:
    return bool(_unaligned(new.content, stored.content) and _unaligned(stored.content, new.content))


def _order(new: Facts, stored: Facts) -> bool:
    same_words = not (_unaligned(new.content, stored.content) or _unaligned(stored.content, new.content))
    return _swapped(new, stored, same_words=same_words)


# Each check, by the name a refusal reports; in the order they are tried. Which of them a lookup applies is
# learned from labelled pairs (proxy/lookup/calibration.py, bench/lookup_train.py).
CHECKS = {
    "negation": _negation, "alternative": _alternative, "question": _question, "number": _number, "name": _name,
    "unit": _unit, "substitution": _substitution, "order": _order,
}


def refusal(new: Facts, stored: Facts, checks: tuple[str, ...] = tuple(CHECKS)) -> str | None:
    """Why the new question must not be answered with the stored one's answer, or None when it may."""
    for name in checks:
        if CHECKS[name](new, stored):
            return name
    return None


def _unaligned(words: frozenset[str], others: frozenset[str]) -> set[str]:
    """The words of one question that no word of the other says (a shared start of 6 letters is enough)."""
    return {word for word in words - others if not any(_prefix(word, other) for other in others)}


def _prefix(one: str, other: str) -> bool:
    shared = len(os.path.commonprefix((one, other)))
    return shared >= _SHARED_PREFIX and shared >= 0.75 * min(len(one), len(other))


def _swapped(new: Facts, stored: Facts, *, same_words: bool) -> bool:
    """True when two shared content words come in the other order, and the order matters: both put a
    directional word between them ("string to integer"), or both put the same content word between
    them ("can a parent claim a child")."""
    shared = new.content & stored.content | {_ME} & set(new.sequence) & set(stored.sequence)
    ours = {word: new.sequence.index(word) for word in shared}  # where each word first stands
    theirs = {word: stored.sequence.index(word) for word in shared}
    for a in shared:
        for b in shared:
            if ours[a] < ours[b] and theirs[a] > theirs[b]:
                between = new.sequence[ours[a] + 1: ours[b]], stored.sequence[theirs[b] + 1: theirs[a]]
                if all(_DIRECTION in words for words in between):
                    return True
                if same_words and set(between[0]) & set(between[1]) - _NOT_CONTENT:
                    return True
    return False


def _plain(token: str) -> str:
    word = token.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    if any(c.isdigit() for c in word):
        word = word.replace("-", "")  # W-2 / W2, Wi-Fi 6 / wifi6
    return word.replace("'", "")  # don't -> dont, as NEGATIONS spells it


def _singular(word: str) -> str:
    """Enough to match "PDF" with "PDFs": a trailing s goes, on both sides alike."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _meaning(word: str) -> str:
    """One form for a word's inflections and synonyms: "changed", "changing", "update" all say change."""
    stem = _stem(word)
    return _SYNONYM_STEMS.get(stem, stem)


def _stem(word: str) -> str:
    """A light stemmer: it only has to give a word's forms the same stem, not find the root."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    word = _singular(word)
    for suffix in ("ing", "ed", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4 - (suffix == "ing"):
            word = word[: -len(suffix)]
            break
    if len(word) > 5 and word.endswith("ise"):
        word = word[:-3] + "ize"  # British spellings: organise, colour
    elif len(word) > 5 and word.endswith("our"):
        word = word[:-3] + "or"
    word = word.rstrip("e") or word
    return word[:-1] if len(word) > 3 and word[-1] == word[-2] else word  # running, cancelled


_SYNONYM_STEMS = {_stem(word): _stem(first) for word, first in SYNONYMS.items()}


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
    return not first and token[0].isupper() and word not in _PRONOUN_I
