"""The ledger's record: one row per request. Both ledger backends (SQLite, PostgreSQL) derive their
table from this dataclass, so adding a field is all it takes to add a column and its migration."""

import dataclasses
import json
import operator
import os
import types
import typing
from dataclasses import dataclass


@dataclass(slots=True)
class SpendRecord:
    request_id: str
    ts: float  # unix seconds when the request arrived
    endpoint: str  # chat | completions | responses | embeddings | passthrough
    requested_model: str
    model: str  # the model that answered (may differ after routing)
    upstream: str
    key_id: str | None
    team: str | None
    user: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_nanos: int | None  # None = unpriced
    usage_source: str  # upstream | estimated
    status: int  # HTTP status returned to the client
    stream: bool
    latency_ms: float
    client_disconnected: bool
    error: str | None  # short error code when status >= 400
    policies: str | None = None  # JSON: policy name -> {mark, mechanism, basis, saved_nanos}
    savings_nanos: int = 0  # saved by policies on this request (counterfactual + holdout estimates)
    lookups: str | None = None  # JSON: lookup policy -> {result, similarity, embedding tokens and cost, agreed}
    cache_write_1h_tokens: int = 0  # part of cache_write_tokens written for an hour (Anthropic's 2x rate)
    tags: str | None = None  # JSON array: the x-thriftgate-tags header and the key's default tags
    # Request facts that `thriftgate whatif` re-evaluates policy conditions on (no prompt text is kept):
    max_output_tokens: int | None = None  # the output limit the client asked for (before any cap)
    has_tools: bool | None = None
    has_images: bool | None = None
    has_response_format: bool | None = None
    language: str | None = None  # x-thriftgate-language (BCP 47, lower case)
    output_words: int | None = None  # words of a whole answer's text, for tokens per word
    batch_id: str | None = None  # a Batch API line: the batch it came in
    attempt: int = 0  # upstream attempts made (the last is this row); on a failed attempt's row, its number
    parent_id: str | None = None  # on a failed attempt's own row: the request it was for
    fallback: str | None = None  # why the answering model is a fallback: unavailable | rate_limited | context_...
    truncated: bool = False  # the stream broke after bytes reached the client: it ended with an error event


def _python_type(hint: typing.Any) -> type:
    optional_of = [t for t in typing.get_args(hint) if t is not types.NoneType]  # X | None -> [X]
    return optional_of[0] if optional_of else hint


# Column name -> its Python type (str, int, float or bool), in the dataclass's order.
COLUMNS: dict[str, type] = {name: _python_type(hint) for name, hint in typing.get_type_hints(SpendRecord).items()}
BOOL_COLUMNS = tuple(name for name, kind in COLUMNS.items() if kind is bool)
FIELD_NAMES = tuple(field.name for field in dataclasses.fields(SpendRecord))
# A record's values in COLUMNS order, as the ledgers insert them. Every field is a scalar, so this is
# dataclasses.astuple without its recursive deep copy (0.5 us a record against 26 us).
row_values = operator.attrgetter(*FIELD_NAMES)


def as_json_lines(records: list[SpendRecord]) -> bytes:
    """Records as JSON lines, as the spool, the unflushed file and the refused file keep them (record_from_dict
    reads one back); json, not orjson, for integers past 64 bits."""
    return "".join(json.dumps(dataclasses.asdict(record)) + "\n" for record in records).encode()


def append_json_lines(path: str | os.PathLike, records: list[SpendRecord]) -> None:
    with open(path, "ab") as out:
        out.write(as_json_lines(records))


def record_from_dict(row: dict) -> SpendRecord:
    """A record from a spooled or exported row (unknown keys, from a newer version, are ignored)."""
    return SpendRecord(**{name: row.get(name) for name in FIELD_NAMES if name in row})
