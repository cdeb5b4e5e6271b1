"""Where prompt-cache breakpoints go in an Anthropic Messages body.

Anthropic caches a prompt's prefix up to a block marked with `cache_control` (a breakpoint, at most 4
a request), if the prefix is at least the model's minimum cacheable length; shorter ones are ignored
without an error. The prompt is rendered tools, system, messages, so the stable prefixes are, in
order: the tool definitions, the system prompt, and a conversation's earlier turns. A breakpoint on
the latest turn writes the conversation so far, which the next turn reads back (Anthropic looks
for a cached prefix up to 20 blocks before each breakpoint); one on the turn before it reads what the
previous request wrote even when a turn adds more than 20 blocks (an agent's tool loop).

A body that already carries a breakpoint, or a top-level cache_control (automatic caching), is its
sender's choice and is left as it is.
"""

from typing import Any

from proxy.accounting.tokens import ModelTokenizer
from proxy.dialects.anthropic_tokens import prompt_parts

MAX_BREAKPOINTS = 4
PARTS = ("tools", "system", "conversation")
# Minimum cacheable prompt length, by model prefix (prompt caching guide, "Cache limitations", as
# third-party copies of it read in October 2026). Below it a breakpoint is silently ignored and costs
# nothing, so where sources disagree (Opus 4.7: 2048 or 4096) the lower figure is used.
_MINIMUM = (("claude-opus-4-5", 4096), ("claude-opus-4-6", 4096), ("claude-haiku-4-5", 4096),
            ("claude-opus-4-7", 2048), ("claude-3-5-haiku", 2048), ("claude-3-haiku", 2048),
            ("claude-opus-5", 512), ("claude-fable-5", 512), ("claude-mythos-5", 512))
_DEFAULT_MINIMUM = 1024
_UNMARKABLE = frozenset({"thinking", "redacted_thinking"})  # blocks that cannot carry cache_control


def minimum_cacheable(model: str) -> int:
    name = model.rpartition("/")[2]
    return next((tokens for prefix, tokens in _MINIMUM if name.startswith(prefix)), _DEFAULT_MINIMUM)


def has_breakpoints(body: dict[str, Any]) -> bool:
    if body.get("cache_control"):
        return True
    system = body.get("system")
    blocks = [*(body.get("tools") or ()), *(system if isinstance(system, list) else ())]
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            blocks.extend(content)
    return any(isinstance(block, dict) and "cache_control" in block for block in blocks)


def place(body: dict[str, Any], tokenizer: ModelTokenizer, *, ttl: str, parts: tuple[str, ...],
          minimum: int | None = None) -> list[str]:
    """Mark the ends of the stable prefixes long enough to cache; returns where ("tools", "system",
    "messages.N"). Nothing when the sender placed breakpoints of its own."""
    if has_breakpoints(body):
        return []
    minimum = minimum or minimum_cacheable(str(body.get("model", "")))
    marker = {"type": "ephemeral", "ttl": "1h"} if ttl == "1h" else {"type": "ephemeral"}
    counts = prompt_parts(tokenizer, body)
    placed: list[str] = []
    running = counts.tools
    if "tools" in parts and running >= minimum and _mark_last(body.get("tools"), marker):
        placed.append("tools")
    running += counts.system
    if "system" in parts and counts.system and running >= minimum and _mark_system(body, marker):
        placed.append("system")
    if "conversation" in parts:
        ends, total = [], running
        for tokens in counts.messages:
            total += tokens
            ends.append(total)
        for index in _conversation_breakpoints(body.get("messages") or []):
            if len(placed) < MAX_BREAKPOINTS and ends[index] >= minimum and _mark_message(body, index, marker):
                placed.append(f"messages.{index}")
    return placed


def _conversation_breakpoints(messages: list[Any]) -> list[int]:
    """The end of the user turn before the latest answer (where the previous request put its
    breakpoint), then the end of the latest turn; none for a first question, which is no conversation yet."""
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if "assistant" not in roles:
        return []
    last_answer = len(roles) - 1 - roles[::-1].index("assistant")
    earlier = [i for i in range(last_answer) if roles[i] == "user"]
    ends = [earlier[-1]] if earlier else []
    return [*ends, len(messages) - 1] if len(messages) - 1 not in ends else ends


def _mark_last(blocks: Any, marker: dict[str, str]) -> bool:
    if not isinstance(blocks, list):
        return False
    for block in reversed(blocks):
        if isinstance(block, dict) and block.get("type") not in _UNMARKABLE and not _empty_text(block):
            block["cache_control"] = dict(marker)
            return True
    return False


def _mark_system(body: dict[str, Any], marker: dict[str, str]) -> bool:
    system = body.get("system")
    if isinstance(system, str):
        body["system"] = system = [{"type": "text", "text": system}]
    return _mark_last(system, marker)


def _mark_message(body: dict[str, Any], index: int, marker: dict[str, str]) -> bool:
    message = body["messages"][index]
    content = message.get("content")
    if isinstance(content, str):
        if not content:
            return False
        message["content"] = content = [{"type": "text", "text": content}]
    return _mark_last(content, marker)


def _empty_text(block: dict[str, Any]) -> bool:
    return block.get("type") == "text" and not block.get("text")
