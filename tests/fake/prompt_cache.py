"""The fake Anthropic's prompt cache: prefixes written at cache_control breakpoints, read back later.

As the Messages API documents it: the prompt is rendered tools, then system, then messages, block by
block; a block marked with cache_control is a breakpoint. A request reads the longest cached prefix
that ends at a block boundary within 20 blocks before one of its breakpoints, and writes the prefix
up to each breakpoint not yet cached, if that prefix is at least the model's minimum cacheable length
(shorter ones are silently not cached). Entries live 5 minutes (or an hour with ttl "1h") from their
last use. Written tokens are charged to the TTL of the breakpoint that wrote them. A top-level
cache_control (automatic caching) puts the breakpoint on the last block.
"""

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.fake.tokens import count, text_of

LOOKBACK_BLOCKS = 20
TTL_SECONDS = {"5m": 300, "1h": 3600}
MIN_CACHEABLE = {"claude-haiku-4-5": 4096, "claude-opus-4-5": 4096, "claude-opus-4-6": 4096}
DEFAULT_MIN_CACHEABLE = 1024
PER_MESSAGE = 3  # the framing tokens of each message, counted on its first block


@dataclass(frozen=True, slots=True)
class CacheUse:
    read: int = 0
    written_5m: int = 0
    written_1h: int = 0

    @property
    def written(self) -> int:
        return self.written_5m + self.written_1h


@dataclass(slots=True)
class PromptCache:
    entries: dict[str, float] = field(default_factory=dict)  # prefix digest -> expiry (monotonic seconds)
    clock: Any = time.monotonic

    def use(self, body: dict[str, Any], model: str) -> tuple[int, CacheUse]:
        """(all input tokens, what the cache read and wrote for this request)."""
        blocks = rendered_blocks(body)
        totals, digests, running, hasher = [], [], 0, hashlib.sha256(model.encode())
        for tokens, canonical, _ in blocks:
            running += tokens
            hasher.update(canonical)
            totals.append(running)
            digests.append(hasher.copy().hexdigest())
        breakpoints = [i for i, (_, _, ttl) in enumerate(blocks) if ttl]
        if not breakpoints and isinstance(body.get("cache_control"), dict) and blocks:
            breakpoints = [len(blocks) - 1]
        now = self.clock()
        hit = self._longest_hit(breakpoints, digests, now)
        read = totals[hit] if hit is not None else 0
        minimum = min_cacheable(model)
        written = {"5m": 0, "1h": 0}
        covered = read
        for i in breakpoints:
            ttl = blocks[i][2] or _ttl(body.get("cache_control"))
            if totals[i] < minimum:
                continue
            if totals[i] > covered:
                written[ttl] += totals[i] - covered
                covered = totals[i]
            self.entries[digests[i]] = now + TTL_SECONDS[ttl]
        if hit is not None:
            self.entries[digests[hit]] = max(self.entries[digests[hit]], now + TTL_SECONDS["5m"])  # a read refreshes
        return running, CacheUse(read, written["5m"], written["1h"])

    def _longest_hit(self, breakpoints: list[int], digests: list[str], now: float) -> int | None:
        best = None
        for end in breakpoints:
            for i in range(end, max(end - LOOKBACK_BLOCKS, -1), -1):
                if self.entries.get(digests[i], 0) > now:
                    best = i if best is None else max(best, i)
                    break
        return best


def min_cacheable(model: str) -> int:
    return next((n for prefix, n in MIN_CACHEABLE.items() if model.startswith(prefix)), DEFAULT_MIN_CACHEABLE)


def _ttl(cache_control: Any) -> str | None:
    if not isinstance(cache_control, dict):
        return None
    return "1h" if cache_control.get("ttl") == "1h" else "5m"


def rendered_blocks(body: dict[str, Any]) -> list[tuple[int, bytes, str | None]]:
    """(tokens, canonical bytes, ttl of its breakpoint or None) of each block, in rendering order."""
    blocks: list[tuple[int, bytes, str | None]] = []

    def add(block: Any, extra_tokens: int = 0, role: str = "") -> None:
        plain = {k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, dict) else block
        canonical = role.encode() + orjson.dumps(plain, option=orjson.OPT_SORT_KEYS)
        ttl = _ttl(block.get("cache_control")) if isinstance(block, dict) else None
        blocks.append((extra_tokens + block_tokens(plain), canonical, ttl))

    for tool in body.get("tools") or ():
        add(tool)
    system = body.get("system")
    for block in [{"type": "text", "text": system}] if isinstance(system, str) else system or ():
        add(block)
    for message in body.get("messages") or ():
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for j, block in enumerate(parts):
            add(block, PER_MESSAGE if j == 0 else 0, message.get("role", "") if j == 0 else "")
    return blocks


def block_tokens(block: Any) -> int:
    """Tokens of one block as the fake counts them: its text, or its JSON for anything else."""
    if isinstance(block, dict) and block.get("type") == "text":
        return count(block.get("text") or "", "claude")
    if isinstance(block, dict) and block.get("type") == "tool_result":
        return count(text_of(block.get("content")), "claude")
    return count(orjson.dumps(block).decode(), "claude")
