"""Tokens per word: the language a client says its request is in, and the words of a whole answer.

The rule of thumb is ~1.3 tokens per English word; other languages take far more, so the same answer
costs more. The ledger records each answer's visible output tokens (usage) beside its words counted here,
and `thriftgate spend --by language` divides one by the other.

A word is what whitespace separates (as in the rules of thumb); Chinese and Japanese, written without
spaces, count each character (ideograph or kana) as a word, the usual convention for them. Thai, Lao,
Khmer and Burmese are also written without spaces but have no such convention: a run between spaces
counts as one word, so their tokens per word read high. Counting is a C-speed split (~20 us for a
1,000-token answer), done once per whole answer.
"""

import re
from proxy.errors import BadRequest

HEADER = "x-thriftgate-language"
# BCP 47 as clients write it: a 2-3 letter language, then subtags (script, region, variant): pt-BR, zh-Hant-TW.
_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,3}")
_CHARACTER_WORD = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9d]")
_CHARACTER_OR_PUNCTUATION = re.compile("[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff01-\uff9d]")
# ISO 639-1: the languages worth a metric label of their own (a bounded set); the rest are "other".
ISO_639_1 = frozenset("""
aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz ee el en
eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv
ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne
ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st
su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu""".split())
OTHER = "other"


def language_of(header: str | None) -> str | None:
    """The header's language tag, lower case; a 400 naming the header when it is not one."""
    if header is None or not header.strip():
        return None
    tag = header.strip()
    if not _TAG.fullmatch(tag):
        raise BadRequest(f"The {HEADER} header must be a BCP 47 language tag such as en, fr or pt-BR; got "
                         f"{tag[:40]!r}.", param=HEADER, code="invalid_language")
    return tag.lower()


def metric_label(language: str | None) -> str:
    """The primary language subtag when it is an ISO 639-1 code, "none" without a tag, else "other"."""
    if language is None:
        return "none"
    primary = language.partition("-")[0]
    return primary if primary in ISO_639_1 else OTHER


def count_words(text: str) -> int:
    if text.isascii():
        return len(text.split())
    characters = len(_CHARACTER_WORD.findall(text))
    return characters + len(_CHARACTER_OR_PUNCTUATION.sub(" ", text).split())
