"""Durable spend ledger: one SQLite row per request, written in batches off the event loop.

The hot path calls Ledger.add(), a list append. A flusher task writes what is pending every
flush_interval, or as soon as batch_size records wait, in one transaction on the ledger's own
thread. A failed write keeps its records pending; close() writes what is left and, if SQLite still
refuses, appends the records to <path>.unflushed.jsonl, so a graceful stop loses nothing.
"""

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import operator
import re
import sqlite3
import types
import typing
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger("thriftgate.ledger")
T = TypeVar("T")


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
    # Request facts that `thriftgate whatif` re-evaluates policy conditions on (no prompt text is kept):
    tags: str | None = None  # the x-thriftgate-tags, sorted, comma-separated ("" for none)
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


# The table is derived from SpendRecord, so adding a field is all it takes to add a column.
_SQL_TYPES = {str: "TEXT", int: "INTEGER", float: "REAL", bool: "INTEGER"}
_FIELD_TYPES = typing.get_type_hints(SpendRecord)


def _sql_type(hint: Any) -> str:
    optional_of = [t for t in typing.get_args(hint) if t is not types.NoneType]  # X | None -> [X]
    return _SQL_TYPES[optional_of[0] if optional_of else hint]


_COLUMNS = {name: _sql_type(hint) for name, hint in _FIELD_TYPES.items()}
_BOOL_COLUMNS = [name for name, hint in _FIELD_TYPES.items() if bool in (hint, *typing.get_args(hint))]
_record_values = operator.attrgetter(*_COLUMNS)
# Names are quoted because "user" is a keyword in other SQL dialects and may become one in SQLite.
_QUOTED_COLUMNS = ", ".join(f'"{name}"' for name in _COLUMNS)
_INSERT = f"INSERT OR REPLACE INTO spend ({_QUOTED_COLUMNS}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_SPEND_GROUPS = {
    "model": "model",
    "requested_model": "requested_model",
    "team": "team",
    "key": "key_id",
    "user": '"user"',
    "upstream": "upstream",
    "endpoint": "endpoint",
    "language": "language",
    "day": "date(ts, 'unixepoch')",  # UTC day
}
# Unpriced: a request to a model that did work (tokens) and has no price. Not a refusal (no model yet, or a
# cost of 0: nothing used) nor a pass-through (priced by nobody, by design). Metrics.observe counts the same.
_UNPRICED = "cost_nanos IS NULL AND endpoint <> 'passthrough' AND model <> ''"
SPEND_GROUPINGS = tuple(_SPEND_GROUPS)  # what `spend --by` and /admin/spend?by= take
_SUMMED_TOKENS = ("prompt_tokens", "completion_tokens", "cached_prompt_tokens", "cache_write_tokens", "reasoning_tokens")


def _ensure_schema(conn: sqlite3.Connection) -> None:
    """Creates the table, or adds the columns an older ledger file lacks (they read as NULL)."""
    definitions = [f'"{name}" {sql_type}' for name, sql_type in _COLUMNS.items()]
    conn.execute(f"CREATE TABLE IF NOT EXISTS spend ({', '.join(definitions)}, PRIMARY KEY (request_id))")
    existing = {row[1] for row in conn.execute("PRAGMA table_info(spend)")}
    for name, sql_type in _COLUMNS.items():
        if name not in existing:
            conn.execute(f'ALTER TABLE spend ADD COLUMN "{name}" {sql_type}')
    conn.execute("CREATE INDEX IF NOT EXISTS spend_ts ON spend (ts)")


def _insert_batch(conn: sqlite3.Connection, batch: list[SpendRecord]) -> None:
    with conn:  # one transaction: the batch is written whole or not at all
        conn.executemany(_INSERT, map(_record_values, batch))


def _append_jsonl(path: str, batch: list[SpendRecord]) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.writelines(json.dumps(dataclasses.asdict(record)) + "\n" for record in batch)


# Queries are (sql, params) built once and run by both Ledger (on its thread) and LedgerReader.
_Query = tuple[str, list[Any]]


def _get_query(request_id: str) -> _Query:
    return "SELECT * FROM spend WHERE request_id = ?", [request_id]


def _recent_query(limit: int) -> _Query:
    return "SELECT * FROM spend ORDER BY ts DESC LIMIT ?", [limit]


def _spend_query(by: str, since: float | None, until: float | None) -> _Query:
    group = _SPEND_GROUPS.get(by)
    if group is None:
        raise ValueError(f"cannot group spend by {by!r}; use one of: {', '.join(_SPEND_GROUPS)}")
    sums = ", ".join(f"COALESCE(SUM({column}), 0) AS {column}" for column in _SUMMED_TOKENS)
    sql = (
        f'SELECT {group} AS "{by}", COUNT(*) AS requests, {sums},'
        f" COALESCE(SUM(cost_nanos), 0) AS cost_nanos, SUM({_UNPRICED}) AS unpriced_requests"
        " FROM spend WHERE ts >= ? AND ts < ? GROUP BY 1 ORDER BY cost_nanos DESC, requests DESC, 1"
    )
    return sql, [-math.inf if since is None else since, math.inf if until is None else until]


def _policy_rows_query(since: float | None, until: float | None) -> _Query:
    sql = (
        "SELECT ts, completion_tokens, cost_nanos, policies FROM spend"
        " WHERE policies IS NOT NULL AND ts >= ? AND ts < ? ORDER BY ts"
    )
    return sql, [-math.inf if since is None else since, math.inf if until is None else until]


def _lookup_rows_query(since: float | None, until: float | None) -> _Query:
    sql = "SELECT ts, cost_nanos, savings_nanos, lookups FROM spend WHERE lookups IS NOT NULL AND ts >= ? AND ts < ?"
    return sql, [-math.inf if since is None else since, math.inf if until is None else until]


def _fetch_dicts(conn: sqlite3.Connection, sql: str, params: list[Any]) -> list[dict]:
    cursor = conn.execute(sql, params)
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, row)) for row in cursor]
    for row in rows:
        for name in _BOOL_COLUMNS:
            if row.get(name) is not None:  # SQLite stores bools as 0/1
                row[name] = bool(row[name])
    return rows


def _first(rows: list[dict]) -> dict | None:
    return rows[0] if rows else None


class Ledger:
    def __init__(self, path: str | Path, *, flush_interval: float = 0.25, batch_size: int = 512):
        self._path = str(path)
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._pending: list[SpendRecord] = []
        self._written = 0
        self._running = False
        self._write_failing = False  # so a lasting failure is logged once, not on every retry
        self._wake = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used only on the executor's thread
        self._flusher: asyncio.Task | None = None

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def written_count(self) -> int:
        return self._written

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thriftgate-ledger")
        try:
            self._conn = await self._run(self._open)
        except BaseException:
            self._executor.shutdown()
            self._executor = None
            raise
        self._running = True
        self._flusher = asyncio.create_task(self._flush_periodically(), name="thriftgate-ledger-flusher")

    def add(self, record: SpendRecord) -> None:
        if not self._running:
            raise RuntimeError("ledger is not running: start() it first, and add nothing after close()")
        self._pending.append(record)
        # == rather than >=: one wake per batch, not one per add while writes are failing.
        if len(self._pending) == self._batch_size:
            self._wake.set()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        # Shielded: a cancelled caller (say get() for a client that went away) must not drop the batch.
        await asyncio.shield(self._write(batch))

    async def close(self) -> None:
        if not self._running:
            return
        self._running = False
        self._wake.set()
        try:
            await self._flusher
            await self.flush()
            if self._pending:
                await self._save_unflushed()
        finally:
            await self._run(self._conn.close)
            self._executor.shutdown()
            self._executor = self._conn = None

    async def get(self, request_id: str) -> dict | None:
        await self.flush()
        return _first(await self._run(_fetch_dicts, self._conn, *_get_query(request_id)))

    async def spend(self, *, by: str, since: float | None = None, until: float | None = None) -> list[dict]:
        query = _spend_query(by, since, until)  # before flushing: a bad `by` fails without work
        await self.flush()
        return await self._run(_fetch_dicts, self._conn, *query)

    async def recent(self, limit: int = 50) -> list[dict]:
        await self.flush()
        return await self._run(_fetch_dicts, self._conn, *_recent_query(limit))

    async def policy_rows(self, *, since: float | None = None, until: float | None = None) -> list[dict]:
        await self.flush()
        return await self._run(_fetch_dicts, self._conn, *_policy_rows_query(since, until))

    def _connect(self) -> sqlite3.Connection:
        """Seam for tests: the connection before the ledger configures it."""
        return sqlite3.connect(self._path, timeout=5.0)

    def _open(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
        _ensure_schema(conn)
        return conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs fn on the ledger's thread: the only thread that touches SQLite."""
        if self._executor is None:
            raise RuntimeError("ledger is not running")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _write(self, batch: list[SpendRecord]) -> None:
        try:
            await self._run(_insert_batch, self._conn, batch)
        except Exception:
            self._pending[:0] = batch  # oldest first, retried by the next flush
            if not self._write_failing:
                logger.exception("ledger write to %s failed; keeping records pending to retry", self._path)
            self._write_failing = True
            return
        if self._write_failing:
            logger.warning("ledger writes to %s work again", self._path)
        self._write_failing = False
        self._written += len(batch)

    async def _flush_periodically(self) -> None:
        while self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            self._wake.clear()
            if self._running:  # once stopping, close() makes the last attempt itself
                await self.flush()

    async def _save_unflushed(self) -> None:
        path = f"{self._path}.unflushed.jsonl"
        batch, self._pending = self._pending, []
        await self._run(_append_jsonl, path, batch)
        logger.error("could not write %d records to ledger %s; saved them to %s", len(batch), self._path, path)


class LedgerReader:
    """Synchronous read-only queries on a ledger file, for the CLI: no writer, no thread."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def get(self, request_id: str) -> dict | None:
        return _first(_fetch_dicts(self._conn, *_get_query(request_id)))

    def spend(self, *, by: str, since: float | None = None, until: float | None = None) -> list[dict]:
        return _fetch_dicts(self._conn, *_spend_query(by, since, until))

    def recent(self, limit: int = 50) -> list[dict]:
        return _fetch_dicts(self._conn, *_recent_query(limit))

    def policy_rows(self, *, since: float | None = None, until: float | None = None) -> list[dict]:
        return _fetch_dicts(self._conn, *_policy_rows_query(since, until))

    def lookup_rows(self, *, since: float | None = None, until: float | None = None) -> list[dict]:
        return _fetch_dicts(self._conn, *_lookup_rows_query(since, until))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "LedgerReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_readonly(path: str | Path) -> LedgerReader:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ledger file at {path}")
    return LedgerReader(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float) -> float:
    """`24h`, `7d`, `30m`, `90s` before now; an ISO-8601 date or datetime (UTC unless it says
    otherwise); or a unix timestamp (all digits, so `20240501` is a timestamp, not a date)."""
    text = text.strip()
    if duration := _DURATION.fullmatch(text):
        return now - float(duration[1]) * _UNIT_SECONDS[duration[2]]
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a time: use a duration (24h, 7d, 30m, 90s),"
            " an ISO-8601 date or datetime (2024-05-01, 2024-05-01T12:00:00Z) or a unix timestamp"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
