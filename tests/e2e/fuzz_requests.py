"""Malformed requests, seeded: every endpoint, every body field the proxy or its policies read, the headers it
reads, the raw bytes and the path. What a fuzz run is made of; tests/e2e/test_fuzz.py sends them."""

import gzip
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

KEY = "tg-fuzz-key-0123456789abcdefghijklmno"

VALID_BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", {
        "model": "gpt-4o", "max_tokens": 20, "temperature": 0, "n": 1,
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "Summarise the rivers of Europe."}]}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_object"}, "stream_options": {"include_usage": True}}),
    "completions": ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 5,
                                        "best_of": 1}),
    "embeddings": ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"],
                                      "encoding_format": "float", "dimensions": 8}),
    "messages": ("/v1/messages", {
        "model": "claude-sonnet-4-5", "max_tokens": 20, "system": "Be brief.", "stream": False,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Summarise the rivers of Europe."}]},
                     {"role": "assistant", "content": "The Danube"}, {"role": "user", "content": "go on"}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}]}),
    "count_tokens": ("/v1/messages/count_tokens", {
        "model": "claude-sonnet-4-5", "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": "hi"}]}),
    "chat_to_claude": ("/v1/chat/completions", {
        "model": "claude-sonnet-4-5", "max_tokens": 20, "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]}),
    "responses": ("/v1/responses", {
        "model": "gpt-4o-mini", "instructions": "Be brief.", "max_output_tokens": 20,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "text": {"format": {"type": "json_object"}}}),
}
# Fields the proxy or a policy reads somewhere, added where the request has none.
READ_FIELDS = ("model", "stream", "system", "thinking", "metadata", "stop_sequences", "top_k", "stream_options",
               "n", "best_of", "max_tokens", "max_completion_tokens",
               "max_output_tokens", "messages", "prompt", "input", "instructions", "tools", "functions",
               "tool_choice", "response_format", "text", "temperature", "user", "dimensions", "encoding_format")


def _deep(depth: int, leaf: Any = None) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


HOSTILE_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1.5, -0.0, 1e308, 2**63, 2**64 + 1, -(2**63) - 1,
    "", "x" * 5000, "gpt-4o\r\nX-Evil: 1", "\x00\x1f\x7f", "\u2028", "ünï\U0001f600", "<|endoftext|>",
    [], [None], [[]], [{}], [1, 2, 3], [[1, 2], [3]], ["a", None], [{"role": None}], [{"type": None}],
    [{"role": "user", "content": None}], [{"role": "user", "content": [None]}], [{"role": "user", "content": 7}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": None}]}],
    [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]}],
    [{"role": "assistant", "tool_calls": [None, {"function": None}]}],
    {}, {"a": None}, {"include_usage": "yes"}, {"type": 1}, {"format": None},
    {"type": "json_schema", "json_schema": None}, {"type": "function", "function": None},
    [None] * 300, _deep(40), _deep(300), _deep(600, "x"),
)
CONTENT_ENCODINGS = ("gzip", "deflate", "br", "zstd", "identity", "gzip, gzip", "bogus", "")
CONTENT_TYPES = ("application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                 "application/json; charset=latin-1", "")
AUTHORIZATIONS = ("", "Bearer", "Bearer ", f"Bearer {KEY}", "Bearer tg-not-a-key", "Bearer sk-client",
                  "Basic !!!", "Basic " + "YTpi", "Token abc", "Bearer " + "k" * 3000)
ANTHROPIC_VALUES = ("2023-06-01", "2026-10-21", "1999-01-01", "", "x" * 300, "tg-fuzz-key-0123456789abcdefghijklmno",
                    "prompt-caching-2024-07-31,nonsense")
USERS = ("alice", "", "u" * 129, "ünï", "a,b;c=d")
TAGS = ("cheap", "a,b,,c", " , ", "t" * 500, ",".join(f"t{i}" for i in range(200)))
PATH_VARIANTS = ("{p}", "/v1/./{t}", "/v1//{t}", "/v1/x/../{t}", "/v1/{te}", "{p}/", "{p}?a=%0d%0a&b=1",
                 "/v1/x%2f..%2f..%2f{t}", "/v1/%2e%2e/{t}", "/v1/{t}%00", "/v1/{t}%3Fx", "/v1/{t}%ZZ")
OTHER_PATHS = ("/v1/models", "/v1/models/gpt-4o", "/v1/models/%2e%2e", "/v1/files", "/v1/unknown",
               "/v1", "/v1/", "/admin/spend", "/admin/requests/%00", "/ui", "/metrics", "/healthz")


@dataclass
class FuzzRequest:
    method: str
    target: str  # sent exactly as written
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    what: str = ""  # how it was made, for the failure message


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every place in the body a value can be set (not inside the deep values this module makes)."""
    yield prefix
    if len(prefix) >= 6:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _set(body: Any, path: tuple, value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return body


def _mutated_body(rng: random.Random, body: dict) -> tuple[Any, str]:
    notes = []
    for _ in range(rng.randint(1, 3)):
        if not isinstance(body, dict):
            break
        if rng.random() < 0.25:
            name = rng.choice(READ_FIELDS)
            value = _hostile(rng)
            body[name] = value
            notes.append(f"{name}={_short(value)}")
            continue
        path = rng.choice([p for p in _paths(body) if p])
        delete = rng.random() < 0.15
        value = _hostile(rng)
        body = _set(body, path, value, delete)
        notes.append(f"{'del ' if delete else ''}{'.'.join(map(str, path))}{'' if delete else '=' + _short(value)}")
    return body, "; ".join(notes)


def _raw_body(rng: random.Random, body: dict) -> tuple[bytes, str]:
    encoded = json.dumps(body).encode()
    choice = rng.randrange(9)
    if choice == 0:
        return encoded[: rng.randrange(len(encoded))], "truncated"
    if choice == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))), "random bytes"
    if choice == 2:
        return b"\xef\xbb\xbf" + encoded, "BOM"
    if choice == 3:
        return encoded.replace(b'"', b"'"), "single quotes"
    if choice == 4:
        return rng.choice([b"[]", b"null", b"1", b'"x"', b"NaN", b"1e999", b"{}", b"{\"model\": NaN}"]), "not an object"
    if choice == 5:
        return encoded[:-1] + b', "model": "gpt-4o-mini"}', "duplicate key"
    if choice == 6:
        return encoded.replace(b"}", b', "s": "\\ud800"}', 1), "lone surrogate"
    if choice == 7:
        return b"[" * 2000 + b"]" * 2000, "deep raw"
    return encoded.replace(b"gpt", b"gpt\xff", 1), "invalid UTF-8"


def _hostile(rng: random.Random) -> Any:
    return json.loads(json.dumps(rng.choice(HOSTILE_VALUES)))  # a copy: later mutations must not reach the pool


def _short(value: Any) -> str:
    return repr(value)[:40]


def _headers(rng: random.Random) -> tuple[dict[str, str], str]:
    headers = {"Content-Type": "application/json"}
    notes = []
    for _ in range(rng.randint(0, 3)):
        kind = rng.randrange(7)
        if kind == 0:
            headers["Content-Encoding"] = rng.choice(CONTENT_ENCODINGS)
        elif kind == 1:
            headers["Content-Type"] = rng.choice(CONTENT_TYPES)
        elif kind == 2:
            headers["Authorization"] = rng.choice(AUTHORIZATIONS)
        elif kind == 3:
            headers["x-thriftgate-user"] = rng.choice(USERS)
        elif kind == 4:
            headers["x-thriftgate-tags"] = rng.choice(TAGS)
        elif kind == 5:
            headers["x-thriftgate-hop"] = "1"
        else:
            headers[rng.choice(("anthropic-version", "x-api-key", "anthropic-beta"))] = rng.choice(ANTHROPIC_VALUES)
        notes.append(f"{list(headers)[-1]}")
    return {k: v for k, v in headers.items() if v != ""}, ",".join(notes)


def requests(seed: int, count: int) -> Iterator[FuzzRequest]:
    rng = random.Random(seed)
    for _ in range(count):
        endpoint = rng.choice(list(VALID_BODIES))
        path, valid = VALID_BODIES[endpoint]
        body: Any = json.loads(json.dumps(valid))
        if rng.random() < 0.3:
            body["stream"] = True
        headers, header_notes = _headers(rng) if rng.random() < 0.4 else ({"Content-Type": "application/json"}, "")
        kind = rng.random()
        if kind < 0.6:
            body, notes = _mutated_body(rng, body)
            raw = json.dumps(body, allow_nan=True).encode()
        elif kind < 0.8:
            raw, notes = _raw_body(rng, body)
        else:
            raw, notes = json.dumps(body).encode(), "valid"
        if headers.get("Content-Encoding") == "gzip" and rng.random() < 0.5:
            raw = gzip.compress(raw)  # an honest gzip, now and then
        target, method = path, "POST"
        roll = rng.random()
        if roll < 0.15:
            tail = path[len("/v1/"):]
            target = rng.choice(PATH_VARIANTS).format(p=path, t=tail, te=tail.replace("/", "%2F"))
        elif roll < 0.22:
            target, method = rng.choice(OTHER_PATHS), rng.choice(("GET", "POST", "DELETE"))
        elif roll < 0.25:
            method = rng.choice(("GET", "PUT", "PATCH", "DELETE", "OPTIONS"))
        yield FuzzRequest(method, target, headers, raw, f"{method} {target} [{header_notes}] {notes}")
