"""`thriftgate ledger migrate`, `ledger export` and `spend` on a PostgreSQL ledger (the fleet's) and a file."""

import contextlib
import csv
import io
import json
import sqlite3
import time

import pyarrow.parquet as pq
import pytest
import yaml

from proxy.accounting.ledger import Ledger
from proxy.accounting.ledger_postgres import PostgresLedger
from proxy.accounting.ledger_sql import POSTGRES, SQLITE
from proxy.accounting.spend_record import COLUMNS
from proxy.cli import main
from tests.ledger.conftest import DSN_ENV, postgres_config
from tests.processes import thriftgate
from tests.test_ledger import record


def config_file(tmp_path, dsn_env: str = DSN_ENV) -> str:
    path = tmp_path / "thriftgate.yaml"
    path.write_text(yaml.safe_dump({"ledger": {"backend": "postgres", "dsn_env": dsn_env,
                                               "spool_path": str(tmp_path / "spool")}}))
    return str(path)


async def test_migrate_export_and_spend_read_the_fleets_database(pg_dsn: str, tmp_path, monkeypatch) -> None:
    env = {DSN_ENV: pg_dsn}
    config = config_file(tmp_path)
    first = thriftgate("ledger", "migrate", "--config", config, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "applied: spend-table, indexes-1"
    assert thriftgate("ledger", "migrate", "--config", config, env=env).stdout.strip() == \
        "the ledger's schema is up to date"
    ledger = PostgresLedger(postgres_config(pg_dsn, tmp_path, monkeypatch))
    await ledger.start()
    now = __import__("time").time()
    ledger.add(record(1, ts=now - 3600, tags='["a"]'))
    ledger.add(record(2, ts=now - 40 * 86400))  # older than 30 days: not exported by default
    ledger.add(record(3, ts=now - 60, team="t2", cost_nanos=None))
    await ledger.close()

    exported = thriftgate("ledger", "export", "--config", config, "--format", "csv", env=env)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [row["request_id"] for row in rows] == ["req-1", "req-3"] and rows[0]["tags"] == '["a"]'
    assert "exported 2 rows" in exported.stderr
    lines = thriftgate("ledger", "export", "--config", config, "--format", "jsonl", "--since", "90d", env=env)
    assert [json.loads(line)["request_id"] for line in lines.stdout.splitlines()] == ["req-2", "req-1", "req-3"]
    out = tmp_path / "spend.parquet"
    parquet = thriftgate("ledger", "export", "--config", config, "--format", "parquet", "--out", str(out), env=env)
    assert parquet.returncode == 0, parquet.stderr
    table = pq.read_table(out)
    assert table.column("request_id").to_pylist() == ["req-1", "req-3"]
    assert table.column("cost_nanos").to_pylist() == [1000, None]

    spend = thriftgate("spend", "--config", config, "--by", "team", "--json", env=env)
    assert spend.returncode == 0, spend.stderr
    assert [(r["team"], r["requests"], r["unpriced_requests"]) for r in json.loads(spend.stdout)] == [
        ("t1", 1, 0), ("t2", 1, 1)]


def test_a_database_that_is_down_is_one_line_without_the_password(tmp_path) -> None:
    from tests.processes import free_port

    dsn = f"postgresql://postgres:hunter2-secret@127.0.0.1:{free_port()}/nothing"
    for command in (("ledger", "migrate"), ("spend", "--by", "tag"), ("ledger", "export")):
        result = thriftgate(*command, "--config", config_file(tmp_path), env={DSN_ENV: dsn})
        assert result.returncode == 1
        assert "hunter2" not in result.stderr + result.stdout
        assert result.stderr.startswith("thriftgate: the ledger database at postgresql://postgres:***@127.0.0.1")
        assert "Traceback" not in result.stderr


def test_an_unset_dsn_variable_is_a_config_error(tmp_path) -> None:
    result = thriftgate("ledger", "migrate", "--config", config_file(tmp_path, "THRIFTGATE_UNSET_DSN_FOR_TEST"))
    assert result.returncode == 2
    assert "ledger" in result.stderr and "THRIFTGATE_UNSET_DSN_FOR_TEST" in result.stderr


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_export_from_a_file(tmp_path, fmt: str) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    await ledger.start()
    ledger.add(record(1, ts=__import__("time").time()))
    await ledger.close()
    result = thriftgate("ledger", "export", "--ledger", str(tmp_path / "ledger.db"), "--format", fmt)
    assert result.returncode == 0 and "req-1" in result.stdout


OLD_COLUMNS = tuple(COLUMNS)[:tuple(COLUMNS).index("cache_write_1h_tokens")]  # before tags, facts and attempts
READERS = (("spend",), ("spend", "--by", "language"), ("savings",), ("ledger", "export"), ("whatif",),
           ("whatif", "--batch"), ("selfhost", "--model", "llama-3.1-8b", "--gpu", "A100-80GB", "--gpu-hour-usd", "2"), ("lookup", "report"))


def old_ledger(path) -> None:
    definitions = ", ".join(f'"{name}" {SQLITE.types[COLUMNS[name]]}' for name in OLD_COLUMNS)
    values = {**{name: getattr(record(1, ts=time.time() - 60), name) for name in OLD_COLUMNS}, "stream": 0}
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(f"CREATE TABLE spend ({definitions}, PRIMARY KEY (request_id))")
        for n in (1, 2):
            row = {**values, "request_id": f"old-{n}"}
            conn.execute(f"INSERT INTO spend ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))


def exit_status(*argv: str) -> int:
    """The status `thriftgate ARGV` exits with (some commands leave through SystemExit)."""
    try:
        return main(list(argv))
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("command", READERS, ids=lambda command: " ".join(command[:2]))
def test_a_ledger_of_an_older_version_is_named_with_the_command_that_migrates_it(tmp_path, capsys, command) -> None:
    path = tmp_path / "old.db"
    old_ledger(path)
    assert exit_status(*command, "--ledger", str(path)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"thriftgate: the ledger file {path} was written by an older thriftgate (no ")
    assert "parent_id" in err and f"`thriftgate ledger migrate --ledger {path}`" in err


def test_after_the_migration_an_older_ledger_reads_as_requests(tmp_path, capsys) -> None:
    path = tmp_path / "old.db"
    old_ledger(path)
    assert main(["ledger", "migrate", "--ledger", str(path)]) == 0
    assert capsys.readouterr().out.startswith("applied: spend-table, columns:")
    assert main(["spend", "--ledger", str(path), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["model"], row["requests"], row["cost_nanos"]) == ("gpt-4o", 2, 2000)


@pytest.mark.parametrize("content", [b"", b"not a database, some notes\n" * 100], ids=["empty", "text"])
def test_a_file_that_is_no_ledger_is_one_line(tmp_path, capsys, content: bytes) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    assert exit_status("spend", "--ledger", str(path)) == 1
    err = capsys.readouterr().err
    assert err.startswith("thriftgate: ") and str(path) in err and err.count("\n") == 1


async def test_a_database_of_an_older_version_is_named_with_the_command_that_migrates_it(pg_dsn: str, tmp_path,
                                                                                        monkeypatch, capsys) -> None:
    import asyncio

    import asyncpg

    conn = await asyncpg.connect(pg_dsn)
    try:
        definitions = ", ".join(f'"{name}" {POSTGRES.types[COLUMNS[name]]}' for name in OLD_COLUMNS)
        await conn.execute(f"CREATE TABLE spend ({definitions}, PRIMARY KEY (request_id))")
    finally:
        await conn.close()
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    config = config_file(tmp_path)
    assert await asyncio.to_thread(exit_status, "spend", "--config", config) == 1
    err = capsys.readouterr().err
    assert err.startswith("thriftgate: the ledger database at postgresql://") and "parent_id" in err
    assert "`thriftgate ledger migrate --config FILE`" in err
    assert await asyncio.to_thread(exit_status, "ledger", "migrate", "--config", config) == 0
    assert await asyncio.to_thread(exit_status, "spend", "--config", config, "--json") == 0


class PagedReader:
    """A reader that counts what each query returned."""

    def __init__(self, reader) -> None:
        self._reader = reader
        self.dialect = reader.dialect
        self.returned: list[int] = []

    def run(self, query):
        rows = self._reader.run(query)
        self.returned.append(len(rows))
        return rows

    def iter_rows(self, *args, **kwargs):
        return type(self._reader).iter_rows(self, *args, **kwargs)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
async def test_an_export_reads_a_page_at_a_time(tmp_path, fmt: str) -> None:
    from proxy.accounting.ledger import open_readonly
    from proxy.accounting.ledger_export import export
    from proxy.accounting.ledger_sql import Filters

    ledger = Ledger(tmp_path / "ledger.db")
    await ledger.start()
    for n in range(2500):
        ledger.add(record(n, ts=1000.0 + n // 3))  # pages break between rows of the same second
    await ledger.close()
    out = tmp_path / f"spend.{fmt}"
    with open_readonly(tmp_path / "ledger.db") as reader:
        paged = PagedReader(reader)
        assert export(paged, Filters(since=1000.0), fmt, str(out), page=300) == 2500
    assert max(paged.returned) == 300 and sum(paged.returned) == 2500  # never the whole ledger at once
    if fmt == "parquet":
        ids = pq.read_table(out).column("request_id").to_pylist()
    elif fmt == "csv":
        ids = [row["request_id"] for row in csv.DictReader(io.StringIO(out.read_text()))]
    else:
        ids = [json.loads(line)["request_id"] for line in out.read_text().splitlines()]
    assert ids == sorted((f"req-{n}" for n in range(2500)), key=lambda id: (int(id[4:]) // 3, id))  # ts, id
