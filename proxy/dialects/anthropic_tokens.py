"""Estimated input tokens of an Anthropic Messages body, part by part.

Anthropic's tokenizer is not public, so every count here is an estimate: text is counted with the
model family's tokenizer (o200k_base times the Claude factor, accounting/model_families.py), and the
provider's own usage replaces the estimate once an answer arrives. The parts are counted in the
order Anthropic renders a prompt (tools, system, messages), which is the order prompt caching
caches prefixes in (prompt_cache uses the running total to place breakpoints).

Rules where Anthropic publishes one: an image costs about width x height / 750 tokens after it is
scaled to fit 1568 px on its long edge and 1.15 megapixels (Vision guide, "Evaluate image size");
tool use adds a system prompt of a few hundred tokens (Tool use pricing table: 346 for the auto
and none choices on current models, which we count for any choice).
"""

import math
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.accounting.image_tokens import decoded_size, image_size
from proxy.accounting.tokens import ModelTokenizer

_PER_MESSAGE = 3  # role and turn framing, as for chat messages
_TOOL_USE_SYSTEM_PROMPT = 346
_IMAGE_LONG_EDGE = 1568
_IMAGE_MAX_PIXELS = 1_150_000
_PIXELS_PER_TOKEN = 750
_UNKNOWN_IMAGE_TOKENS = 1_600  # a URL is never fetched: count the largest image Claude reads without scaling
# PDFs: each page is read as text and as an image; ~1,500 text tokens plus a full-size page image,
# one page per 75 KB of file when the page count is unknown.
_TOKENS_PER_PDF_PAGE = 1_500 + _UNKNOWN_IMAGE_TOKENS
_BYTES_PER_PDF_PAGE = 75_000


@dataclass(frozen=True, slots=True)
class PromptParts:
    """Tokens of the tools, the system prompt and each message, in the order they are rendered."""

    tools: int
    system: int
    messages: tuple[int, ...]

    @property
    def total(self) -> int:
        return self.tools + self.system + sum(self.messages)


def prompt_parts(tokenizer: ModelTokenizer, body: dict[str, Any]) -> PromptParts:
    tools = body.get("tools")
    tool_tokens = 0
    if isinstance(tools, list) and tools:
        tool_tokens = _TOOL_USE_SYSTEM_PROMPT + sum(_json_tokens(tokenizer, tool) for tool in tools)
    messages = body.get("messages")
    return PromptParts(
        tools=tool_tokens,
        system=_content_tokens(tokenizer, body.get("system")),
        messages=tuple(
            _PER_MESSAGE + _content_tokens(tokenizer, m.get("content")) for m in messages if isinstance(m, dict)
        ) if isinstance(messages, list) else (),
    )


def output_tokens(tokenizer: ModelTokenizer, text: str) -> int:
    return tokenizer.completion_output(text)


def _content_tokens(tokenizer: ModelTokenizer, content: Any) -> int:
    if isinstance(content, str):
        return tokenizer.text(content)
    if not isinstance(content, list):
        return 0
    return sum(_block_tokens(tokenizer, block) for block in content if isinstance(block, dict))


def _block_tokens(tokenizer: ModelTokenizer, block: dict[str, Any]) -> int:
    match block.get("type"):
        case "text":
            return tokenizer.text(block.get("text") or "")
        case "thinking":
            return tokenizer.text(block.get("thinking") or "")
        case "redacted_thinking":
            return 0  # opaque; earlier turns' thinking is not read again by the model anyway
        case "image":
            return _image_tokens(block.get("source"))
        case "document":
            return _document_tokens(tokenizer, block.get("source"))
        case "tool_use" | "server_tool_use":
            return tokenizer.text(block.get("name") or "") + _json_tokens(tokenizer, block.get("input"))
        case "tool_result":
            return _content_tokens(tokenizer, block.get("content"))
        case _:
            return _json_tokens(tokenizer, {k: v for k, v in block.items() if k != "cache_control"})


def _json_tokens(tokenizer: ModelTokenizer, value: Any) -> int:
    return tokenizer.text(orjson.dumps(value).decode()) if value is not None else 0


def _image_tokens(source: Any) -> int:
    if not isinstance(source, dict) or source.get("type") != "base64" or not isinstance(source.get("data"), str):
        return _UNKNOWN_IMAGE_TOKENS
    size = image_size(source["data"])  # reads the header's few bytes of the raw base64
    return claude_image_tokens(*size) if size else _UNKNOWN_IMAGE_TOKENS


def claude_image_tokens(width: int, height: int) -> int:
    scale = min(1.0, _IMAGE_LONG_EDGE / max(width, height), math.sqrt(_IMAGE_MAX_PIXELS / (width * height)))
    return max(1, math.ceil(int(width * scale) * int(height * scale) / _PIXELS_PER_TOKEN))


def _document_tokens(tokenizer: ModelTokenizer, source: Any) -> int:
    if not isinstance(source, dict):
        return 0
    if source.get("type") == "text":
        return tokenizer.text(source.get("data") or "")
    if source.get("type") == "content":
        return _content_tokens(tokenizer, source.get("content"))
    data = source.get("data")
    size = decoded_size(data) if isinstance(data, str) else 0
    return max(1, math.ceil(size / _BYTES_PER_PDF_PAGE)) * _TOKENS_PER_PDF_PAGE
