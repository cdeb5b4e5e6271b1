"""Rows waiting on disk for the database: a bounded spool of JSON lines that survives a restart.

New rows are appended to `active.jsonl`. To replay, that file is renamed `replaying.jsonl` (new rows
go to a fresh active file meanwhile) and read back in chunks; once every chunk is written it is
deleted. A replay cut short is replayed whole next time: the database ignores rows it already has.
All file work runs on the spool's own thread, never on the event loop.
"""

import asyncio
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from proxy.accounting.spend_record import SpendRecord, append_json_lines, as_json_lines, record_from_dict

log = logging.getLogger("thriftgate.ledger")


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self._active = directory / "active.jsonl"
        self._replaying = directory / "replaying.jsonl"
        self._max_bytes = max_bytes
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thriftgate-spool")
        self.rows = 0  # rows in the spool, not yet written to the database
        self._bytes = 0
        self.dropped = 0

    async def open(self) -> None:
        self.rows, self._bytes = await self._run(self._measure)

    def close(self) -> None:
        self._executor.shutdown()

    async def append(self, batch: list[SpendRecord]) -> None:
        lines = as_json_lines(batch)
        if not await self._run(self._write, lines, len(batch)):
            self.dropped += len(batch)
            log.error("ledger spool %s is full (%d bytes): dropped %d rows (%d so far); raise ledger.spool_max_mb",
                      self._active.parent, self._max_bytes, len(batch), self.dropped)

    async def keep_aside(self, records: list[SpendRecord]) -> None:
        """Rows the database refuses for their values, in `refused.jsonl` beside the spool: never replayed."""
        if records:
            await self._run(append_json_lines, self._active.parent / "refused.jsonl", records)
            log.error("the ledger database refused %d rows for their values (%s...); kept in %s", len(records),
                      ", ".join(record.request_id for record in records[:3]), self._active.parent / "refused.jsonl")

    async def replay(self, write, chunk_rows: int) -> int:
        """Writes every spooled row with `write(records)`, oldest first; returns how many."""
        written = 0
        while await self._run(self._take_active):
            offset = 0
            while True:
                records, offset = await self._run(self._read, offset, chunk_rows)
                if not records:
                    break
                await write(records)
                written += len(records)
            await self._run(self._done_replaying)
        return written

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _measure(self) -> tuple[int, int]:
        self._active.parent.mkdir(parents=True, exist_ok=True)
        rows = size = 0
        for path in (self._replaying, self._active):
            if path.exists():
                data = path.read_bytes()
                rows += data.count(b"\n")
                size += len(data)
        return rows, size

    # The methods below run on the spool's thread, one at a time: they alone change rows and bytes.

    def _write(self, lines: bytes, count: int) -> bool:
        if self._bytes + len(lines) > self._max_bytes:
            return False
        with open(self._active, "ab") as out:
            out.write(lines)
            out.flush()
            os.fsync(out.fileno())  # a row in the spool survives a crash of the machine too
        self.rows += count
        self._bytes += len(lines)
        return True

    def _take_active(self) -> bool:
        """True when there is a file to replay (an interrupted replay first, else the active file)."""
        if self._replaying.exists():
            return True
        if self._active.exists() and self._active.stat().st_size:
            os.replace(self._active, self._replaying)
            return True
        return False

    def _done_replaying(self) -> None:
        size = self._replaying.stat().st_size
        rows = self._replaying.read_bytes().count(b"\n")
        self._replaying.unlink()
        self.rows, self._bytes = max(self.rows - rows, 0), max(self._bytes - size, 0)

    def _read(self, offset: int, count: int) -> tuple[list[SpendRecord], int]:
        records = []
        with open(self._replaying, "rb") as spool:
            spool.seek(offset)
            for line in spool:
                if not line.endswith(b"\n"):
                    break  # a line cut short by a crash while it was written: never completed, never counted
                records.append(record_from_dict(json.loads(line)))
                offset += len(line)
                if len(records) == count:
                    break
        return records, offset
