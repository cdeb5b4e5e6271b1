"""`thriftgate ledger export`: every ledger row in a time range, for finance, as CSV, JSON lines or
Parquet (Parquet needs pyarrow: `pip install 'thriftgate[export]'`)."""

import csv
import json
import sys
from typing import IO

from proxy.accounting import ledger_sql as sql
from proxy.accounting.ledger_read import LedgerReader
from proxy.accounting.spend_record import COLUMNS

FORMATS = ("csv", "jsonl", "parquet")


def export(reader: LedgerReader, filters: sql.Filters, fmt: str, out: str | None) -> int:
    """Writes the rows to `out` (stdout when None; Parquet needs a file); returns how many."""
    rows = reader.rows(filters)
    if fmt == "parquet":
        _parquet(rows, out)
    elif out is None:
        _text(rows, fmt, sys.stdout)
    else:
        with open(out, "w", encoding="utf-8", newline="") as stream:
            _text(rows, fmt, stream)
    return len(rows)


def _text(rows: list[dict], fmt: str, stream: IO[str]) -> None:
    if fmt == "jsonl":
        stream.writelines(json.dumps(row) + "\n" for row in rows)
        return
    writer = csv.DictWriter(stream, fieldnames=list(COLUMNS), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def _parquet(rows: list[dict], out: str | None) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("--format parquet needs pyarrow: pip install 'thriftgate[export]' (or use csv or jsonl)") from None
    if out is None:
        raise ValueError("--format parquet writes a file: give --out FILE")
    types = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    schema = pa.schema([(name, types[kind]) for name, kind in COLUMNS.items()])
    table = pa.Table.from_pylist([{name: row.get(name) for name in COLUMNS} for row in rows], schema=schema)
    pq.write_table(table, out)
