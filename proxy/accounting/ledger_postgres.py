"""The PostgreSQL ledger: one database for the whole fleet, written by every replica (asyncpg).

Batches go in with COPY into a temporary table and one INSERT ... ON CONFLICT DO NOTHING, so a
batch written twice (a replay after an unclear failure) leaves each row once. While the database is
down, batches go to the on-disk spool (ledger_spool.py); a task tries again every retry_seconds,
replays the spool, and only then writes directly again. The schema is created and migrated here
(ledger_sql.migration_steps), under an advisory lock so replicas starting together take turns.
The DSN never reaches a log or an error: only its masked form does.
"""

import asyncio
import contextlib
import dataclasses
import logging
import time
from pathlib import Path

import asyncpg

from proxy.accounting import ledger_sql as sql
from proxy.accounting.ledger import BatchedLedger
from proxy.accounting.ledger_read import LedgerReader, check_columns
from proxy.accounting.ledger_spool import Spool
from proxy.accounting.spend_record import COLUMNS, FIELD_NAMES, SpendRecord, row_values
from proxy.control.config import LedgerConfig, masked_dsn
from proxy.errors import ServiceUnavailable

log = logging.getLogger("thriftgate.ledger")
_MIGRATION_LOCK = 0x74677364  # pg_advisory_xact_lock key: one replica migrates at a time
_COLUMNS = list(COLUMNS)
_QUOTED = ", ".join(f'"{name}"' for name in COLUMNS)
_STAGING = "CREATE TEMP TABLE IF NOT EXISTS spend_batch (LIKE spend) ON COMMIT DELETE ROWS"
_COLUMNS_SQL = ("SELECT column_name FROM information_schema.columns WHERE table_name = 'spend'"
                " AND table_schema = current_schema()")
_INSERT = f"INSERT INTO spend ({_QUOTED}) SELECT {_QUOTED} FROM spend_batch ON CONFLICT (request_id) DO NOTHING"


def _without_nul(record: SpendRecord) -> SpendRecord:
    nul = {name: value.replace("\x00", "\ufffd") for name, value in zip(FIELD_NAMES, row_values(record))
           if isinstance(value, str) and "\x00" in value}
    return dataclasses.replace(record, **nul) if nul else record


class LedgerUnavailable(ServiceUnavailable):
    """The database cannot be reached; str() names it by its masked DSN (a 503 to an admin API caller)."""

    code = "ledger_unavailable"


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Brings the database to the current schema; returns the steps it applied."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(sql.schema_table(sql.POSTGRES))
        applied = {row["step"] for row in await conn.fetch(f"SELECT step FROM {sql.SCHEMA_TABLE}")}
        existing = {row["column_name"] for row in await conn.fetch(_COLUMNS_SQL)}
        steps = sql.migration_steps(sql.POSTGRES, applied, existing)
        for name, statements in steps:
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(f"INSERT INTO {sql.SCHEMA_TABLE} (version, step, applied_at) VALUES "
                               f"((SELECT COALESCE(MAX(version), 0) + 1 FROM {sql.SCHEMA_TABLE}), $1, $2)",
                               name, time.time())
    return [name for name, _ in steps]


async def connect(dsn: str, timeout: float) -> asyncpg.Connection:
    """One connection, with errors that never carry the DSN."""
    try:
        return await asyncpg.connect(dsn, timeout=timeout, command_timeout=timeout)
    except Exception as exc:
        raise LedgerUnavailable(f"the ledger database at {masked_dsn(dsn)} is unreachable "
                                f"({type(exc).__name__})") from None


class PostgresLedger(BatchedLedger):
    backend = "postgres"
    dialect = sql.POSTGRES
    fleet = True

    def __init__(self, config: LedgerConfig) -> None:
        super().__init__(flush_interval=config.flush_interval_seconds, batch_size=config.batch_size)
        self._config = config
        self._dsn = config.dsn
        self._where = masked_dsn(self._dsn)
        self._spool = Spool(Path(config.spool_path), config.spool_max_mb * 2**20)
        self._pool: asyncpg.Pool | None = None
        self._up = False
        self._recovery: asyncio.Task | None = None
        self._writing = asyncio.Lock()

    def health(self) -> dict:
        return {"backend": self.backend, "reachable": self._up, "spooled_rows": self._spool.rows,
                "dropped_rows": self._spool.dropped}

    async def start(self) -> None:
        await self._spool.open()
        try:
            await self._open_pool()
        except Exception as exc:
            self._went_down(exc)
        else:
            if self._spool.rows:  # rows left from before a restart: replayed before anything new
                self._went_down(None)
            else:
                self._up = True
        self._start_flusher()

    async def close(self) -> None:
        if not self._running:
            return
        await self._stop_flusher()
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        if self._up:
            await self.flush()
        elif self._pending:
            batch, self._pending = self._pending, []
            await self._spool.append(batch)
        if self._spool.rows:
            log.error("ledger database at %s is unreachable: %d rows wait in %s and are written at the next start",
                      self._where, self._spool.rows, self._config.spool_path)
        if self._pool is not None:
            self._pool.terminate()
        self._spool.close()

    async def _write(self, batch: list[SpendRecord]) -> None:
        if self._up:
            try:
                async with self._writing:
                    self._written += await self._insert(batch)
                return
            except Exception as exc:
                self._went_down(exc)
        await self._spool.append(batch)  # in order behind what the spool holds
        if self._up:  # the database came back while this batch was on its way to the spool: replay it
            self._went_down(None)

    async def _fetch(self, query: sql.Query) -> list[dict]:
        if not self._up:
            raise LedgerUnavailable(f"the ledger database at {self._where} is unreachable")
        query_sql, params = query.render(self.dialect)
        async with self._writing:  # after the batches on their way: a read sees every row written before it
            pass
        try:
            rows = await self._pool.fetch(query_sql, *params)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            self._went_down(exc)
            raise LedgerUnavailable(f"the ledger database at {self._where} is unreachable") from None
        return [dict(row) for row in rows]

    async def _open_pool(self) -> None:
        if self._pool is None:
            timeout = self._config.timeout_seconds
            try:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=1, max_size=self._config.pool_size, timeout=timeout, command_timeout=timeout)
            except Exception as exc:
                raise LedgerUnavailable(f"{type(exc).__name__}") from None
        async with self._pool.acquire() as conn:
            applied = await migrate(conn)
        if applied:
            log.info("ledger database at %s migrated: %s", self._where, ", ".join(applied))

    async def _insert(self, batch: list[SpendRecord]) -> int:
        """A batch PostgreSQL refuses for what it holds (DataError: a NUL in a text, say a client's batch
        custom_id; SQLite stores it) is not a database that is down: spooled, it would be refused at every
        replay and hold up every row behind it. Its NULs become U+FFFD; a row still refused is kept aside."""
        try:
            await self._copy(batch)
        except asyncpg.DataError:
            try:
                await self._copy(batch := [_without_nul(record) for record in batch])
            except asyncpg.DataError:
                refused = [record for record in batch if not await self._copied([record])]
                await self._spool.keep_aside(refused)
                return len(batch) - len(refused)
        return len(batch)

    async def _copied(self, batch: list[SpendRecord]) -> bool:
        try:
            await self._copy(batch)
        except asyncpg.DataError:
            return False
        return True

    async def _copy(self, batch: list[SpendRecord]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_STAGING)
            await conn.copy_records_to_table("spend_batch", records=map(row_values, batch),
                                             columns=_COLUMNS)
            await conn.execute(_INSERT)

    def _went_down(self, exc: BaseException | None) -> None:
        self._up = False
        if self._recovery is None or self._recovery.done():
            if exc is not None:
                log.warning("ledger database at %s is unreachable (%s); rows are kept in the spool %s and written "
                            "when it returns; retrying every %ss", self._where, type(exc).__name__,
                            self._config.spool_path, self._config.retry_seconds)
            self._recovery = asyncio.create_task(self._recover(), name="thriftgate-ledger-recovery")

    async def _recover(self) -> None:
        while True:
            try:
                await self._open_pool()
                written = await self._spool.replay(self._insert, self._batch_size)
            except Exception:
                await asyncio.sleep(self._config.retry_seconds)
                continue
            self._written += written
            self._up = True  # no await since the spool emptied: nothing slipped in behind it
            log.warning("ledger database at %s is reachable again; wrote %d spooled rows", self._where, written)
            return


class PostgresReader(LedgerReader):
    """The CLI's reader over the fleet's database: the same queries, on a private event loop."""

    dialect = sql.POSTGRES

    def __init__(self, config: LedgerConfig, *, check: bool = True) -> None:
        """check: refuse (OutdatedLedger) a database whose schema this version cannot read; off to migrate it."""
        self._loop = asyncio.new_event_loop()
        try:
            self._conn = self._loop.run_until_complete(connect(config.dsn, config.timeout_seconds))
        except BaseException:
            self._loop.close()
            raise
        if check:
            try:
                existing = {row["column_name"] for row in self._loop.run_until_complete(self._conn.fetch(_COLUMNS_SQL))}
                check_columns(existing, f"the ledger database at {masked_dsn(config.dsn)}",
                              "thriftgate ledger migrate --config FILE")
            except BaseException:
                self.close()
                raise

    def run(self, query: sql.Query) -> list[dict]:
        query_sql, params = query.render(self.dialect)
        return [dict(row) for row in self._loop.run_until_complete(self._conn.fetch(query_sql, *params))]

    def migrate(self) -> list[str]:
        return self._loop.run_until_complete(migrate(self._conn))

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._conn.close())
        finally:
            self._loop.close()
