"""Durable spend ledger: one row per request, written in batches off the event loop.

The hot path calls add(), a list append. A flusher task writes what is pending every
flush_interval, or as soon as batch_size records wait. Two backends share this writer and the
query interface of ledger_sql.py: `Ledger`, an SQLite file (the embedded default, one per replica),
and `PostgresLedger` (ledger_postgres.py), one database for the whole fleet.

SQLite: a failed write keeps its records pending; close() writes what is left and, if SQLite still
refuses, appends the records to <path>.unflushed.jsonl, so a graceful stop loses nothing.
"""

import asyncio
import contextlib
import itertools
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from proxy.accounting import ledger_sql as sql
from proxy.accounting.ledger_read import LedgerReader, fetch_dicts, open_readonly, parse_since
from proxy.accounting.spend_record import COLUMNS, SpendRecord, append_json_lines, row_values

__all__ = ["BatchedLedger", "Ledger", "LedgerReader", "SpendRecord", "open_readonly", "parse_since"]
logger = logging.getLogger("thriftgate.ledger")
T = TypeVar("T")

# sqlite3 binds None and bool (a subclass of int) only after looking for an adapter: two failed attribute lookups,
# one raising a formatted AttributeError, per value (~3k instructions; a row has ~17 of them). Registered, the
# lookup finds one at once; each binds as before (NULL; 0 or 1). {}.get is a C callable returning None for None.
sqlite3.register_adapter(type(None), {}.get)
sqlite3.register_adapter(bool, int)

_QUOTED_COLUMNS = ", ".join(f'"{name}"' for name in COLUMNS)
_ROW = f"({', '.join('?' * len(COLUMNS))})"
# What one row's values can make a write fail with (an integer past 64 bits, a constraint): not a ledger that is
# down, so the batch's other rows are written (sqlite3.OperationalError, a locked or full disk, keeps them all).
_ROW_ERRORS = (OverflowError, sqlite3.InterfaceError, sqlite3.DataError, sqlite3.IntegrityError)
# Rows per INSERT statement, largest first: a batch is written in as few statements as these sizes allow. sqlite3
# lets other threads run during each statement and takes the GIL back after it: row by row (executemany), the
# writer thread and the event loop traded the GIL for every row (1.6 futex calls per request in the bench).
_ROWS_PER_STATEMENT = (256, 32, 4, 1)
_INSERTS = {rows: f"INSERT OR REPLACE INTO spend ({_QUOTED_COLUMNS}) VALUES {', '.join([_ROW] * rows)}"
            for rows in _ROWS_PER_STATEMENT}


class BatchedLedger:
    """The writer both backends share: batching, the flusher task, the reads."""

    backend = ""
    dialect: sql.Dialect
    fleet = False  # the ledger holds every replica's rows

    def __init__(self, *, flush_interval: float = 0.25, batch_size: int = 512) -> None:
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._pending: list[SpendRecord] = []
        self._written = 0
        self._running = False
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task | None = None
        self._on_their_way: set[asyncio.Task] = set()  # batches taken from _pending, not written yet

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def written_count(self) -> int:
        return self._written

    def health(self) -> dict:
        return {"backend": self.backend, "reachable": True}

    def add(self, record: SpendRecord) -> None:
        if not self._running:
            raise RuntimeError("ledger is not running: start() it first, and add nothing after close()")
        self._pending.append(record)
        # == rather than >=: one wake per batch, not one per add while writes are failing.
        if len(self._pending) == self._batch_size:
            self._wake.set()

    async def flush(self) -> None:
        """Writes what is pending and waits for every batch already on its way (the periodic flusher's too), so
        that a read after it sees them."""
        if self._pending:
            batch, self._pending = self._pending, []
            write = asyncio.create_task(self._write(batch))
            self._on_their_way.add(write)
            write.add_done_callback(self._on_their_way.discard)
        if self._on_their_way:
            # Shielded: a cancelled caller (say get() for a client that went away) must not drop a batch.
            await asyncio.shield(asyncio.gather(*self._on_their_way))

    async def get(self, request_id: str) -> dict | None:
        rows = await self.fetch(sql.one(request_id))
        return rows[0] if rows else None

    async def spend(self, *, by: str, since: float | None = None, until: float | None = None,
                    **filters: str | None) -> list[dict]:
        return await self.fetch(sql.spend(self.dialect, by, sql.Filters(since, until, **filters)))

    async def recent(self, limit: int = 50, *, requests_only: bool = False) -> list[dict]:
        return await self.fetch(sql.recent(limit, requests_only))

    async def policy_rows(self, *, since: float | None = None, until: float | None = None) -> list[dict]:
        return await self.fetch(sql.policy_rows(self.dialect, sql.Filters(since, until)))

    async def fetch(self, query: sql.Query) -> list[dict]:
        """Runs a read after writing what this replica has pending, so it sees its own requests."""
        await self.flush()
        return await self._fetch(query)

    def _start_flusher(self) -> None:
        self._running = True
        self._flusher = asyncio.create_task(self._flush_periodically(), name="thriftgate-ledger-flusher")

    async def _stop_flusher(self) -> None:
        self._running = False
        self._wake.set()
        await self._flusher

    async def _flush_periodically(self) -> None:
        while self._running:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_interval):
                    await self._wake.wait()
            self._wake.clear()
            if self._running:  # once stopping, close() makes the last attempt itself
                await self.flush()

    async def _write(self, batch: list[SpendRecord]) -> None:
        raise NotImplementedError

    async def _fetch(self, query: sql.Query) -> list[dict]:
        raise NotImplementedError


class Ledger(BatchedLedger):
    """The SQLite ledger: one file per replica, written on the ledger's own thread."""

    backend = "sqlite"
    dialect = sql.SQLITE

    def __init__(self, path: str | Path, *, flush_interval: float = 0.25, batch_size: int = 512):
        super().__init__(flush_interval=flush_interval, batch_size=batch_size)
        self._path = str(path)
        self._write_failing = False  # so a lasting failure is logged once, not on every retry
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used only on the executor's thread

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thriftgate-ledger")
        try:
            self._conn = await self._run(self._open)
        except BaseException:
            self._executor.shutdown()
            self._executor = None
            raise
        self._start_flusher()

    async def close(self) -> None:
        if not self._running:
            return
        try:
            await self._stop_flusher()
            await self.flush()
            if self._pending:
                await self._save_unflushed()
        finally:
            await self._run(self._conn.close)
            self._executor.shutdown()
            self._executor = self._conn = None

    def _connect(self) -> sqlite3.Connection:
        """Seam for tests: the connection before the ledger configures it."""
        return sqlite3.connect(self._path, timeout=5.0)

    def _open(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
        migrate_sqlite(conn)
        return conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs fn on the ledger's thread: the only thread that touches SQLite."""
        if self._executor is None:
            raise RuntimeError("ledger is not running")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _fetch(self, query: sql.Query) -> list[dict]:
        return await self._run(fetch_dicts, self._conn, *query.render(self.dialect))

    async def _write(self, batch: list[SpendRecord]) -> None:
        refused: list[SpendRecord] = []
        try:
            try:
                await self._run(_insert_batch, self._conn, batch)
            except _ROW_ERRORS:  # a row SQLite cannot take: the others are written, it is kept aside
                refused = await self._run(_insert_each, self._conn, batch)
                await self._run(append_json_lines, f"{self._path}.unflushed.jsonl", refused)
        except Exception:  # written again whole: INSERT OR REPLACE makes a row written twice one row
            self._pending[:0] = batch  # oldest first, retried by the next flush
            if not self._write_failing:
                logger.exception("ledger write to %s failed; keeping records pending to retry", self._path)
            self._write_failing = True
            return
        if refused:
            logger.error("ledger %s refused %d records (%s...); saved them to %s.unflushed.jsonl", self._path,
                         len(refused), ", ".join(record.request_id for record in refused[:3]), self._path)
        if self._write_failing:
            logger.warning("ledger writes to %s work again", self._path)
        self._write_failing = False
        self._written += len(batch) - len(refused)

    async def _save_unflushed(self) -> None:
        path = f"{self._path}.unflushed.jsonl"
        batch, self._pending = self._pending, []
        await self._run(append_json_lines, path, batch)
        logger.error("could not write %d records to ledger %s; saved them to %s", len(batch), self._path, path)


def migrate_sqlite(conn: sqlite3.Connection) -> list[str]:
    """Brings a ledger file to the current schema; returns the steps it applied."""
    conn.execute(sql.schema_table(sql.SQLITE))
    applied = {row[0] for row in conn.execute(f"SELECT step FROM {sql.SCHEMA_TABLE}")}
    existing = {row[1] for row in conn.execute("PRAGMA table_info(spend)")}
    steps = sql.migration_steps(sql.SQLITE, applied, existing)
    with conn:
        for name, statements in steps:
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"INSERT INTO {sql.SCHEMA_TABLE} (version, step, applied_at) VALUES "
                         f"((SELECT COALESCE(MAX(version), 0) + 1 FROM {sql.SCHEMA_TABLE}), ?, ?)", (name, time.time()))
    return [name for name, _ in steps]


def _insert_batch(conn: sqlite3.Connection, batch: list[SpendRecord]) -> None:
    rows = list(map(row_values, batch))
    most = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(COLUMNS)  # 999 before SQLite 3.32
    with conn:  # one transaction: the batch is written whole or not at all
        start = 0
        for size in _ROWS_PER_STATEMENT:
            if size > most:
                continue
            while len(rows) - start >= size:  # in order: a request id written twice keeps its last row
                conn.execute(_INSERTS[size], tuple(itertools.chain.from_iterable(rows[start:start + size])))
                start += size


def _insert_each(conn: sqlite3.Connection, batch: list[SpendRecord]) -> list[SpendRecord]:
    """Row by row, after a batch failed on what a row holds: returns the rows SQLite refused."""
    refused = []
    with conn:
        for record in batch:
            try:
                conn.execute(_INSERTS[1], row_values(record))
            except _ROW_ERRORS:
                refused.append(record)
    return refused
