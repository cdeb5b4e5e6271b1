"""`thriftgate ledger export`: every ledger row in a time range, for finance, as CSV, JSON lines or
Parquet (Parquet needs pyarrow: `pip install 'thriftgate[export]'`).

Rows are read and written a page at a time (LedgerReader.iter_rows), so a year of traffic exports in the
memory of one page."""

import contextlib
import csv
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO

from proxy.accounting import ledger_sql as sql
from proxy.accounting.ledger_read import LedgerReader
from proxy.accounting.spend_record import COLUMNS

FORMATS = ("csv", "jsonl", "parquet")
PAGE_ROWS = 5000


def export(reader: LedgerReader, filters: sql.Filters, fmt: str, out: str | None, *, page: int = PAGE_ROWS) -> int:
    """Writes the rows to `out` (stdout when None; Parquet needs a file); returns how many."""
    rows = reader.iter_rows(filters, page=page)
    if fmt == "parquet":
        return _parquet(rows, out, page)
    with contextlib.nullcontext(sys.stdout) if out is None else open(out, "w", encoding="utf-8", newline="") as stream:
        return _text(rows, fmt, stream)


def _text(rows: Iterable[dict], fmt: str, stream: IO[str]) -> int:
    count = 0
    if fmt == "jsonl":
        for row in rows:
            stream.write(json.dumps(row) + "\n")
            count += 1
        return count
    writer = csv.DictWriter(stream, fieldnames=list(COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def _parquet(rows: Iterator[dict], out: str | None, page: int) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("--format parquet needs pyarrow: pip install 'thriftgate[export]' (or use csv or jsonl)") from None
    if out is None:
        raise ValueError("--format parquet writes a file: give --out FILE")
    types = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    schema = pa.schema([(name, types[kind]) for name, kind in COLUMNS.items()])
    count = 0
    with pq.ParquetWriter(out, schema) as writer:  # one row group a page; a file even with no rows
        while batch := list(itertools.islice(rows, page)):
            writer.write_table(pa.Table.from_pylist([{name: row.get(name) for name in COLUMNS} for row in batch],
                                                    schema=schema))
            count += len(batch)
    return count
