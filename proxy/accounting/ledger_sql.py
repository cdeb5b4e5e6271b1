"""The ledger's SQL, for both backends: the schema and its migrations (derived from SpendRecord) and
the read side as a small query interface.

Reads are `Query` values built from a `Filters` (time range; model, team, key, user, tag) and
rendered for a dialect: spend grouped by a dimension, one request, the most recent requests, the
rows policies and lookups touched, and every row in time order (exports, and what-if repricing).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proxy.accounting.spend_record import COLUMNS


@dataclass(frozen=True)
class Dialect:
    name: str
    types: dict[type, str]
    day: str  # the UTC day (YYYY-MM-DD) of ts
    tag_rows: str  # joined to spend: one row per tag, as t.value (NULL for an untagged row)
    has_tag: str  # a row carries the tag given as the parameter
    placeholder: Callable[[int], str]  # the n-th (1-based) parameter


SQLITE = Dialect(
    "sqlite", {str: "TEXT", int: "INTEGER", float: "REAL", bool: "INTEGER"}, "date(ts, 'unixepoch')",
    "LEFT JOIN json_each(spend.tags) AS t", "EXISTS (SELECT 1 FROM json_each(spend.tags) WHERE value = ?)",
    lambda n: "?",
)
POSTGRES = Dialect(
    "postgres", {str: "TEXT", int: "BIGINT", float: "DOUBLE PRECISION", bool: "BOOLEAN"},
    "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "LEFT JOIN LATERAL jsonb_array_elements_text(spend.tags::jsonb) AS t(value) ON true",
    "jsonb_exists(spend.tags::jsonb, ?)", lambda n: f"${n}",
)

# ---- schema ----

SCHEMA_TABLE = "thriftgate_schema"
_INDEXES = {  # name -> (columns, condition): for the time ranges, filters and reports the readers ask for
    "spend_ts": ("ts", None),
    "spend_team_ts": ("team, ts", None),
    "spend_key_ts": ("key_id, ts", None),
    "spend_model_ts": ("model, ts", None),
    "spend_user_ts": ('"user", ts', None),
    "spend_policies_ts": ("ts", "policies IS NOT NULL"),
    "spend_lookups_ts": ("ts", "lookups IS NOT NULL"),
}


_COMMA_TAGS_TO_JSON = (
    "UPDATE spend SET tags = CASE WHEN tags = '' THEN NULL ELSE"
    " '[\"' || replace(replace(replace(tags, '\\', '\\\\'), '\"', '\\\"'), ',', '\",\"') || '\"]' END"
    " WHERE tags IS NOT NULL AND substr(tags, 1, 1) <> '['")


def _column(dialect: Dialect, name: str) -> str:
    return f'"{name}" {dialect.types[COLUMNS[name]]}'


def migration_steps(dialect: Dialect, applied: set[str], existing_columns: set[str]) -> list[tuple[str, list[str]]]:
    """The steps (name, statements) a database still needs, in order: the table, the columns SpendRecord
    gained since (one step naming them), the indexes. Each step is recorded in SCHEMA_TABLE by name."""
    steps = []
    # An SQLite ledger of the release before recorded steps kept tags comma-separated ("" for none).
    comma_tags = dialect is SQLITE and "spend-table" not in applied and "tags" in existing_columns
    if "spend-table" not in applied:
        columns = ", ".join(_column(dialect, name) for name in COLUMNS)
        steps.append(("spend-table", [f"CREATE TABLE IF NOT EXISTS spend ({columns}, PRIMARY KEY (request_id))"]))
        if not existing_columns:
            existing_columns = set(COLUMNS)  # the table is created whole
    if comma_tags:
        steps.append(("tags-json", [_COMMA_TAGS_TO_JSON]))
    missing = [name for name in COLUMNS if name not in existing_columns]
    if missing:
        # Names are quoted: "user" is a keyword in PostgreSQL (and may become one in SQLite).
        steps.append((f"columns:{','.join(missing)}",
                      [f"ALTER TABLE spend ADD COLUMN {_column(dialect, name)}" for name in missing]))
    if "indexes-1" not in applied:
        statements = [f"CREATE INDEX IF NOT EXISTS {name} ON spend ({columns})" + (f" WHERE {where}" if where else "")
                      for name, (columns, where) in _INDEXES.items()]
        if dialect is POSTGRES:
            statements.append("CREATE INDEX IF NOT EXISTS spend_tags ON spend USING GIN ((tags::jsonb))")
        steps.append(("indexes-1", statements))
    return steps


def schema_table(dialect: Dialect) -> str:
    number = "INTEGER" if dialect is SQLITE else "BIGINT"
    return (f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version {number} PRIMARY KEY, step TEXT UNIQUE NOT NULL,"
            f" applied_at {dialect.types[float]} NOT NULL)")


# ---- reads ----

SPEND_GROUPS = {
    "model": "model",
    "requested_model": "requested_model",
    "team": "team",
    "key": "key_id",
    "user": '"user"',
    "upstream": "upstream",
    "endpoint": "endpoint",
    "language": "language",
    "day": None,  # the dialect's UTC day
    "tag": "t.value",  # a row with two tags counts under each
}
SPEND_GROUPINGS = tuple(SPEND_GROUPS)  # what `spend --by` and /admin/spend?by= take
SUMMED = ("prompt_tokens", "completion_tokens", "cached_prompt_tokens", "cache_write_tokens", "reasoning_tokens",
          "cost_nanos")
# A client's request is its own row; a failed attempt that another followed has a row of its own too, with
# parent_id naming the request (docs/routing.md). Requests count the first kind; tokens and dollars sum both.
REQUEST_ROW = "parent_id IS NULL"
# Unpriced: a request to a model that did work (tokens) and has no price. Not a refusal (no model yet, or a
# cost of 0: nothing used) nor a pass-through (priced by nobody, by design). Metrics.observe counts the same.
_UNPRICED = f"{REQUEST_ROW} AND cost_nanos IS NULL AND endpoint <> 'passthrough' AND model <> ''"
_FILTER_COLUMNS = {"model": "model", "team": "team", "key": "key_id", "user": '"user"'}


@dataclass(frozen=True)
class Filters:
    since: float | None = None
    until: float | None = None
    model: str | None = None
    team: str | None = None
    key: str | None = None
    user: str | None = None
    tag: str | None = None


@dataclass(frozen=True)
class Query:
    """SQL with `?` for each parameter, rendered per dialect."""

    sql: str
    params: tuple[Any, ...]

    def render(self, dialect: Dialect) -> tuple[str, list[Any]]:
        parts = self.sql.split("?")
        sql = parts[0] + "".join(dialect.placeholder(n) + part for n, part in enumerate(parts[1:], start=1))
        return sql, list(self.params)


def _where(dialect: Dialect, filters: Filters, *extra: str) -> tuple[str, list[Any]]:
    conditions, params = ["ts >= ?", "ts < ?"], [
        -math.inf if filters.since is None else filters.since, math.inf if filters.until is None else filters.until]
    for name, column in _FILTER_COLUMNS.items():
        value = getattr(filters, name)
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    if filters.tag is not None:
        conditions.append(dialect.has_tag)
        params.append(filters.tag)
    return " AND ".join([*extra, *conditions]), params


def spend(dialect: Dialect, by: str, filters: Filters = Filters()) -> Query:
    if by not in SPEND_GROUPS:
        raise ValueError(f"cannot group spend by {by!r}; use one of: {', '.join(SPEND_GROUPS)}")
    group = SPEND_GROUPS[by] or dialect.day
    where, params = _where(dialect, filters)
    sums = ", ".join(f"CAST(COALESCE(SUM({column}), 0) AS BIGINT) AS {column}" for column in SUMMED)
    join = f" {dialect.tag_rows}" if by == "tag" else ""
    sql = (f'SELECT {group} AS "{by}", {_count(REQUEST_ROW)} AS requests, {sums}, {_count(_UNPRICED)}'
           " AS unpriced_requests"
           f" FROM spend{join} WHERE {where} GROUP BY 1 ORDER BY cost_nanos DESC, requests DESC, 1")
    return Query(sql, tuple(params))


def _count(condition: str) -> str:
    """The rows meeting the condition, as the same integer type in both dialects."""
    return f"CAST(COALESCE(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END), 0) AS BIGINT)"


def one(request_id: str) -> Query:
    return Query("SELECT * FROM spend WHERE request_id = ?", (request_id,))


def recent(limit: int, requests_only: bool = False) -> Query:
    """The last rows; requests_only: the requests' own rows, not those of their failed attempts."""
    where = f" WHERE {REQUEST_ROW}" if requests_only else ""
    return Query(f"SELECT * FROM spend{where} ORDER BY ts DESC LIMIT ?", (limit,))


def policy_rows(dialect: Dialect, filters: Filters = Filters()) -> Query:
    where, params = _where(dialect, filters, "policies IS NOT NULL")
    return Query(f"SELECT ts, completion_tokens, cost_nanos, policies FROM spend WHERE {where} ORDER BY ts",
                 tuple(params))


def lookup_rows(dialect: Dialect, filters: Filters = Filters()) -> Query:
    where, params = _where(dialect, filters, "lookups IS NOT NULL")
    return Query(f"SELECT ts, cost_nanos, savings_nanos, lookups FROM spend WHERE {where}", tuple(params))


def rows(dialect: Dialect, filters: Filters = Filters(), columns: tuple[str, ...] = tuple(COLUMNS), *,
         after: tuple[float, str] | None = None, limit: int | None = None) -> Query:
    """Whole rows in time order: exports, and repricing what was recorded. A page at a time: the `limit`
    rows after the row (ts, request_id) `after`."""
    unknown = [name for name in columns if name not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown ledger columns: {', '.join(unknown)}")
    where, params = _where(dialect, filters)
    if after is not None:
        where += " AND (ts > ? OR (ts = ? AND request_id > ?))"
        params += [after[0], after[0], after[1]]
    quoted = ", ".join(f'"{name}"' for name in columns)
    page = "" if limit is None else " LIMIT ?"
    return Query(f"SELECT {quoted} FROM spend WHERE {where} ORDER BY ts, request_id{page}",
                 tuple(params) + (() if limit is None else (limit,)))
