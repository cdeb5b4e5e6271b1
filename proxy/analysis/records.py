"""The one door through which analysis reads recorded traffic: spend rows as dicts keyed like SpendRecord.

Everything in proxy/analysis is a pure function over these rows. They come through the ledger's read
interface (ledger_read.LedgerReader: an SQLite file, or the fleet's PostgreSQL through PostgresReader),
a page at a time, so a month of traffic is never held in memory at once.
"""

from collections.abc import Iterator

import orjson

from proxy.accounting import ledger_sql as sql
from proxy.accounting.ledger_read import LedgerReader
from proxy.accounting.usage import Usage


def spend_rows(reader: LedgerReader, since: float, until: float) -> Iterator[dict]:
    """Rows of requests that arrived in [since, until), oldest first."""
    return reader.iter_rows(sql.Filters(since, until))


def tags_of(row: dict) -> frozenset[str]:
    """The request's tags: the ledger's JSON array, NULL for none (comma-separated in a ledger written
    before the column was an array). A row recorded before tags were kept reads as untagged."""
    tags = row.get("tags")
    if not tags:
        return frozenset()
    if tags.startswith("["):
        return frozenset(tag for tag in orjson.loads(tags) if isinstance(tag, str) and tag)
    return frozenset(tag for tag in tags.split(",") if tag)


BATCH_TAG = "batch"  # on every line of a Batch API job
_USAGE_FIELDS = tuple(name for name in Usage.__dataclass_fields__ if name.endswith("_tokens"))
_COLUMN = {"key": "key_id"}


def usage_of(row: dict) -> Usage:
    """The tokens the request used, as the proxy priced them."""
    return Usage(**{name: row.get(name) or 0 for name in _USAGE_FIELDS})


def is_request(row: dict) -> bool:
    """The request's own row, not the row of one of its failed upstream attempts (which has parent_id):
    reports count requests from these, and sum the dollars of both (a failed attempt may have been billed)."""
    return row.get("parent_id") is None


def is_batch_line(row: dict) -> bool:
    return bool(row.get("batch_id")) or BATCH_TAG in tags_of(row)


def group_names(row: dict, by: str) -> list[str]:
    """The groups a row counts in: its value of `by`; under "tag", each of its tags."""
    if by == "tag":
        return sorted(tags_of(row)) or ["(no tags)"]
    value = row.get(_COLUMN.get(by, by))
    return [str(value) if value not in (None, "") else "-"]
