"""Ledger tests run against both backends: an SQLite file and PostgreSQL.

PostgreSQL is the shared server on 127.0.0.1:5432 (trust auth, user postgres; also in CI): the test
run creates a database of its own and drops it at the end; each test works in a schema of its own.
Tests that kill PostgreSQL start their own server (tests/processes.py PostgresServer).
"""

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from proxy.accounting.ledger import BatchedLedger, Ledger
from proxy.accounting.ledger_postgres import PostgresLedger
from proxy.control.config import LedgerConfig
from tests.processes import PostgresServer

SHARED_PG = "postgresql://postgres@127.0.0.1:5432"
DSN_ENV = "THRIFTGATE_TEST_LEDGER_DSN"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database for this test run, dropped at its end."""
    import asyncio

    name = f"thriftgate_test_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(f"{SHARED_PG}/postgres")
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield f"{SHARED_PG}/{name}"
    asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture
async def pg_dsn(pg_database: str) -> AsyncIterator[str]:
    """The run's database with a schema of this test's own as its search path."""
    async with own_schema(pg_database) as dsn:
        yield dsn


@contextlib.asynccontextmanager
async def own_schema(database: str) -> AsyncIterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        yield f"{database}?search_path={schema}"
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()


def postgres_config(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings) -> LedgerConfig:
    monkeypatch.setenv(DSN_ENV, dsn)
    return LedgerConfig(backend="postgres", dsn_env=DSN_ENV, spool_path=str(tmp_path / "spool"), **settings)


@pytest.fixture(params=["sqlite", "postgres"])
async def any_ledger(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     pg_database: str) -> AsyncIterator[BatchedLedger]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            ledger: BatchedLedger = Ledger(tmp_path / "ledger.db", flush_interval=60)
        else:
            dsn = await stack.enter_async_context(own_schema(pg_database))
            ledger = PostgresLedger(postgres_config(dsn, tmp_path, monkeypatch, flush_interval_seconds=60))
        await ledger.start()
        yield ledger
        await ledger.close()


@pytest.fixture
async def own_postgres() -> AsyncIterator[PostgresServer]:
    """A PostgreSQL server this test may kill (never the shared one)."""
    server = PostgresServer()
    try:
        server.init()
        await server.start()
        yield server
    finally:
        server.remove()
