"""Ledgers for the analysis tests: records written through the real Ledger."""

import dataclasses
import time
from collections.abc import Iterable
from pathlib import Path

from proxy.accounting.ledger import Ledger, SpendRecord, open_readonly
from proxy.analysis.records import spend_rows


async def write_ledger(path: Path, records: Iterable[SpendRecord], *, ts_now: bool = False) -> None:
    """Writes the records; with ts_now, moved so that the newest arrived a minute ago (inside any --since)."""
    records = list(records)
    if ts_now:
        shift = time.time() - 60 - max(r.ts for r in records)
        records = [dataclasses.replace(r, ts=r.ts + shift) for r in records]
    ledger = Ledger(path)
    await ledger.start()
    for record in records:
        ledger.add(record)
    await ledger.close()


def read_rows(path: Path, since: float, until: float) -> list[dict]:
    """The rows analysis sees in [since, until), read through the ledger's read interface."""
    with open_readonly(path) as reader:
        return list(spend_rows(reader, since, until))
