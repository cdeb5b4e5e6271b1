"""What the fake model says: deterministic replies, JSON that fits a schema, tool calls, embeddings."""

import base64
import hashlib
import itertools
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import orjson

from tests.fake.tokens import token_pieces

# 128 words, each one token alone and with a leading space in both o200k_base and cl100k_base (a test
# checks it), so a plain reply of N words is exactly N tokens and streams one word per chunk.
WORDS: tuple[str, ...] = tuple(
    """the of and to in is that for it as with was on be by at this from or an are not but have all they
    which one their has been more will can about also other new some time when these two may first any most
    only over such after even many where much people through well back just those made between under while
    both each same world life day year work part place case number point group system program question
    government company hand fact side state water light power money story music market city river window
    table paper stone silver summer winter forest bridge tower castle signal engine rocket planet energy
    pattern simple quiet bright rapid steady hidden modern happy yellow purple orange green blue black""".split()
)
assert len(WORDS) == 128  # one digest byte picks one word, without bias

DEFAULT_REPLY_WORDS = 40
MIN_CONCISE_WORDS = 3
REASONING_MODEL_PREFIXES = ("o1", "o3", "o4", "gpt-5")
REASONING_TOKENS_PER_VISIBLE = 2


def reply_length(requested: int | None, concise: bool) -> int:
    words = DEFAULT_REPLY_WORDS if requested is None else max(1, requested)
    return max(MIN_CONCISE_WORDS, words // 4) if concise else words


def reply_words(seed: int, prompt: str, index: int, length: int) -> list[str]:
    """The words of reply `index` to `prompt`.

    shake_256 is an extendable-output hash: a shorter digest is a prefix of a longer one, so a concise
    reply is the opening of the full reply to the same prompt, and savings compare like with like.
    """
    digest = hashlib.shake_256(f"{seed}\x00{index}\x00{prompt}".encode()).digest(length)
    return [WORDS[byte % len(WORDS)] for byte in digest]


def value_for_schema(schema: dict[str, Any], words: Iterator[str]) -> Any:
    """A value that validates against a JSON schema (the subset structured outputs allow), filled with words."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return value_for_schema(schema[combinator][0], words)
    kind = schema.get("type", "object")
    if isinstance(kind, list):  # ["string", "null"]: nullable; give the non-null kind
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: value_for_schema(sub, words) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [value_for_schema(schema.get("items", {}), words) for _ in range(2)]
    scalars = {"string": str, "integer": len, "number": lambda w: len(w) / 2, "boolean": lambda w: len(w) % 2 == 0}
    return scalars[kind](next(words)) if kind in scalars else None


@dataclass(frozen=True, slots=True)
class OutputShape:
    """What a request asks the model to produce."""

    kind: Literal["text", "json", "tool"]
    schema: dict[str, Any] | None = None  # json: the reply's schema (None for json_object); tool: the parameters
    tool_name: str = ""
    finish_reason: str = "stop"  # when the output is complete; a forced function call still says "stop"

    def render(self, words: list[str]) -> str:
        sentence = " ".join(words)
        if self.kind == "text":
            return sentence
        if self.schema is None:
            return orjson.dumps({"answer": sentence}).decode()
        return orjson.dumps(value_for_schema(self.schema, itertools.cycle(words))).decode()


TEXT = OutputShape("text")


@dataclass(frozen=True, slots=True)
class Generated:
    """One choice: the visible output as token pieces, and how it ended."""

    pieces: tuple[str, ...]
    finish_reason: str
    reasoning_tokens: int
    tool_name: str = ""
    call_id: str = ""

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces) + self.reasoning_tokens


def is_reasoning_model(model: str) -> bool:
    return model.startswith(REASONING_MODEL_PREFIXES)


def generate(
    *, seed: int, prompt: str, index: int, length: int, shape: OutputShape, model: str, budget: int | None
) -> Generated:
    """Reply `index` to `prompt`, cut at `budget` completion tokens (reasoning included) with finish "length"."""
    words = reply_words(seed, prompt, index, length)
    pieces = token_pieces(shape.render(words), model)
    reasoning_share = REASONING_TOKENS_PER_VISIBLE if is_reasoning_model(model) else 0
    finish_reason = shape.finish_reason
    reasoning = reasoning_share * len(pieces)
    if budget is not None and len(pieces) + reasoning > budget:
        pieces = pieces[: budget // (1 + reasoning_share)]
        reasoning = budget - len(pieces) if reasoning_share else 0
        finish_reason = "length"
    call_id = "call_" + hashlib.shake_256(f"{seed}\x00{index}\x00{prompt}".encode()).hexdigest(12)
    return Generated(pieces, finish_reason, reasoning, shape.tool_name, call_id if shape.kind == "tool" else "")


@lru_cache(maxsize=4096)
def unit_vector(seed: int, text: str, dimensions: int) -> array:
    """A float32 unit vector drawn from the text's hash.

    The digest of d dimensions is a prefix of the digest of more, so asking for fewer `dimensions` shortens
    and renormalises the full vector, as OpenAI's text-embedding-3 models do.
    """
    raw = array("i")
    raw.frombytes(hashlib.shake_256(f"{seed}\x00{text}".encode()).digest(4 * dimensions))
    norm = math.sqrt(sum(x * x for x in raw))
    return array("f", [x / norm for x in raw])


def encoded_embedding(vector: array, encoding_format: str) -> list[float] | str:
    """float: a JSON list; base64: the little-endian float32 bytes, which is what the SDKs ask for."""
    return base64.b64encode(vector.tobytes()).decode() if encoding_format == "base64" else vector.tolist()
