"""Token counts of texts seen lately, so that a text repeated across requests is encoded once.

Chat clients send the whole conversation on every turn and the same system prompt on every request: without
the memo, each turn counts every earlier message again (tiktoken's encode was ~4% of a budgeted request's CPU).
A text is remembered by its SHA-256 digest, not by itself: no prompt outlives its request in this memory, every
entry costs the same whatever the text's length, and no one can make a long text pass for a short one (MD5 or
Python's hash could be made to collide: a budget would then hold too little for that request). Least recently
used first out. Called from worker threads too (a large prompt is counted on one): each OrderedDict call is
atomic under the GIL, and a key another thread just pushed out is simply not there.
"""

import hashlib
from collections import OrderedDict
from collections.abc import Callable

MAX_TEXTS = 1 << 16  # ~155 bytes each: 10 MB when full (tracemalloc)


class CountMemo:
    def __init__(self, count: Callable[[str], int], *, max_texts: int = MAX_TEXTS) -> None:
        self._count = count
        self._counts: OrderedDict[bytes, int] = OrderedDict()
        self._max_texts = max_texts

    def __call__(self, text: str) -> int:
        # surrogatepass: a lone surrogate (valid in a JSON string) still has bytes to digest.
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        counts = self._counts
        tokens = counts.get(digest)
        if tokens is not None:
            try:  # try rather than contextlib.suppress: half the cost of a hit
                counts.move_to_end(digest)
            except KeyError:
                pass
            return tokens
        counts[digest] = tokens = self._count(text)
        if len(counts) > self._max_texts:
            try:
                counts.popitem(last=False)
            except KeyError:
                pass
        return tokens

    def __len__(self) -> int:
        return len(self._counts)
