"""`thriftgate ledger migrate`, `ledger export` and `spend` on a PostgreSQL ledger (the fleet's) and a file."""

import csv
import io
import json

import pyarrow.parquet as pq
import pytest
import yaml

from proxy.accounting.ledger import Ledger
from proxy.accounting.ledger_postgres import PostgresLedger
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
