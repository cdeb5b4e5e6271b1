"""Reading a ledger outside the proxy (the CLI): synchronous queries, and `--since` times."""

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proxy.accounting import ledger_sql as sql
from proxy.accounting.spend_record import BOOL_COLUMNS, COLUMNS


class OutdatedLedger(Exception):
    """A ledger an older thriftgate wrote (columns missing) or no ledger at all; str() says what to do."""


def check_columns(existing: set[str], where: str, migrate: str) -> None:
    """Readers query every column: a ledger without them is named, with the command that brings it up to date."""
    if not existing:
        raise OutdatedLedger(f"{where} has no ledger table (spend): is it a thriftgate ledger? `{migrate}` creates one")
    missing = [name for name in COLUMNS if name not in existing]
    if missing:
        raise OutdatedLedger(f"{where} was written by an older thriftgate (no {', '.join(missing)}): bring it up to "
                             f"date with `{migrate}` (a proxy of this version also does as it starts), then try again")


def fetch_dicts(conn: sqlite3.Connection, query_sql: str, params: list[Any]) -> list[dict]:
    cursor = conn.execute(query_sql, params)
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, row)) for row in cursor]
    for row in rows:
        for name in BOOL_COLUMNS:
            if row.get(name) is not None:  # SQLite stores bools as 0/1
                row[name] = bool(row[name])
    return rows


class LedgerReader:
    """Read-only queries; `run(query)` is the one primitive, the rest name common queries.
    SQLite here; ledger_postgres.PostgresReader is the same interface over the fleet's database."""

    dialect = sql.SQLITE

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def run(self, query: sql.Query) -> list[dict]:
        return fetch_dicts(self._conn, *query.render(self.dialect))

    def get(self, request_id: str) -> dict | None:
        rows = self.run(sql.one(request_id))
        return rows[0] if rows else None

    def spend(self, *, by: str, since: float | None = None, until: float | None = None, **filters) -> list[dict]:
        return self.run(sql.spend(self.dialect, by, sql.Filters(since, until, **filters)))

    def recent(self, limit: int = 50, *, requests_only: bool = False) -> list[dict]:
        return self.run(sql.recent(limit, requests_only))

    def policy_rows(self, *, since: float | None = None, until: float | None = None) -> list[dict]:
        return self.run(sql.policy_rows(self.dialect, sql.Filters(since, until)))

    def lookup_rows(self, *, since: float | None = None, until: float | None = None) -> list[dict]:
        return self.run(sql.lookup_rows(self.dialect, sql.Filters(since, until)))

    def iter_rows(self, filters: sql.Filters = sql.Filters(), page: int = 5000) -> Iterator[dict]:
        """Whole rows in time order, read a page at a time: a month of traffic is never held whole."""
        after = None
        while True:
            rows = self.run(sql.rows(self.dialect, filters, after=after, limit=page))
            yield from rows
            if len(rows) < page:
                return
            after = (rows[-1]["ts"], rows[-1]["request_id"])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "LedgerReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_readonly(path: str | Path) -> LedgerReader:
    """A reader of the ledger file at `path`; OutdatedLedger when it is not one this version can read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ledger file at {path}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        existing = {row[1] for row in conn.execute("PRAGMA table_info(spend)")}
        check_columns(existing, f"the ledger file {path}", f"thriftgate ledger migrate --ledger {path}")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise OutdatedLedger(f"{path} is not an SQLite ledger ({exc})") from None
    except OutdatedLedger:
        conn.close()
        raise
    return LedgerReader(conn)


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
