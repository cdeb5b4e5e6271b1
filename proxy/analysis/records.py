"""The one door through which analysis reads recorded traffic: spend rows as dicts keyed like SpendRecord.

Everything in proxy/analysis is a pure function over these rows; reading the ledger another way (another
backend, a query interface) changes this module alone. Rows stream from a read-only connection in pages,
so a month of traffic is never held in memory at once.
"""

import sqlite3
import typing
from collections.abc import Iterator
from pathlib import Path

import orjson

from proxy.accounting.ledger import SpendRecord
from proxy.accounting.usage import Usage

_PAGE = 5000
_BOOLEAN = frozenset(name for name, hint in typing.get_type_hints(SpendRecord).items()
                     if hint is bool or typing.get_args(hint) == (bool, type(None)))


def spend_rows(ledger_path: str | Path, since: float, until: float) -> Iterator[dict]:
    """Rows of requests that arrived in [since, until), oldest first; columns an older ledger lacks read as None."""
    path = Path(ledger_path)
    if not path.is_file():
        raise FileNotFoundError(f"no ledger at {path}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        cursor = conn.execute("SELECT * FROM spend WHERE ts >= ? AND ts < ? ORDER BY ts", (since, until))
        names = [column[0] for column in cursor.description]
        missing = [name for name in SpendRecord.__dataclass_fields__ if name not in names]
        while page := cursor.fetchmany(_PAGE):
            for values in page:
                row = dict(zip(names, values))
                for name in missing:
                    row[name] = None
                for name in _BOOLEAN:
                    if row[name] is not None:
                        row[name] = bool(row[name])
                yield row
    finally:
        conn.close()


def tags_of(row: dict) -> frozenset[str] | None:
    """The request's tags, written comma-separated or as a JSON array; None when the row predates the column."""
    tags = row.get("tags")
    if tags is None:
        return None
    if tags.startswith("["):
        return frozenset(tag for tag in orjson.loads(tags) if isinstance(tag, str) and tag)
    return frozenset(tag for tag in tags.split(",") if tag)


BATCH_TAG = "batch"  # on every line of a Batch API job
_USAGE_FIELDS = tuple(name for name in Usage.__dataclass_fields__ if name.endswith("_tokens"))
_COLUMN = {"key": "key_id"}


def usage_of(row: dict) -> Usage:
    """The tokens the request used, as the proxy priced them."""
    return Usage(**{name: row.get(name) or 0 for name in _USAGE_FIELDS})


def is_batch_line(row: dict) -> bool:
    tags = tags_of(row)
    return bool(row.get("batch_id")) or (tags is not None and BATCH_TAG in tags)


def group_names(row: dict, by: str) -> list[str]:
    """The groups a row counts in: its value of `by`; under "tag", each of its tags."""
    if by == "tag":
        tags = tags_of(row)
        return ["(not recorded)"] if tags is None else (sorted(tags) or ["(no tags)"])
    value = row.get(_COLUMN.get(by, by))
    return [str(value) if value not in (None, "") else "-"]
