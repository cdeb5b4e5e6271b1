"""The ledger contract: the SQLite and PostgreSQL ledgers store, group and return the same rows."""

import asyncio
import json
import sqlite3
from dataclasses import replace

import asyncpg
import pytest

from proxy.accounting import ledger_sql as sql
from proxy.accounting.ledger import BatchedLedger, Ledger
from proxy.accounting.ledger_postgres import PostgresLedger, migrate
from proxy.accounting.spend_record import COLUMNS
from tests.ledger.conftest import postgres_config
from tests.test_ledger import NOW, record

ROW_SUMS = {"requests": 1, "prompt_tokens": 10, "completion_tokens": 5, "cached_prompt_tokens": 2,
            "cache_write_tokens": 0, "reasoning_tokens": 1, "cost_nanos": 1000, "unpriced_requests": 0}


async def test_rows_come_back_as_they_went_in(any_ledger: BatchedLedger) -> None:
    any_ledger.add(record(1, stream=True, policies='{"cache": "hit"}', tags='["checkout"]'))
    any_ledger.add(record(2, cost_nanos=None, team=None, client_disconnected=True))
    got = await any_ledger.get("req-1")
    assert got == {**{name: getattr(record(1), name) for name in COLUMNS}, "stream": True,
                   "policies": '{"cache": "hit"}', "tags": '["checkout"]'}
    assert (await any_ledger.get("req-2"))["client_disconnected"] is True
    assert await any_ledger.get("missing") is None
    assert [row["request_id"] for row in await any_ledger.recent(limit=1)] == ["req-2"]



async def test_recent_requests_leave_out_the_rows_of_failed_attempts(any_ledger: BatchedLedger) -> None:
    """/ui's "Last requests" lists requests, as every count of requests does (parent_id empty)."""
    any_ledger.add(record(1))
    any_ledger.add(record(2, request_id="req-3.1", parent_id="req-3", attempt=1, status=503, error="upstream_503"))
    any_ledger.add(record(3, request_id="req-3", attempt=2))
    assert [row["request_id"] for row in await any_ledger.recent(requests_only=True)] == ["req-3", "req-1"]
    assert [row["request_id"] for row in await any_ledger.recent()] == ["req-3", "req-3.1", "req-1"]

async def test_a_read_sees_the_rows_of_a_batch_already_on_its_way(any_ledger: BatchedLedger) -> None:
    any_ledger.add(record(1))
    on_its_way = asyncio.create_task(any_ledger.flush())  # as the periodic flusher takes the batch
    await asyncio.sleep(0)  # it has taken the batch; its write has not started
    assert [row["request_id"] for row in await any_ledger.recent()] == ["req-1"]
    await on_its_way


async def test_a_row_written_twice_is_kept_once(any_ledger: BatchedLedger) -> None:
    any_ledger.add(record(1))
    await any_ledger.flush()
    any_ledger.add(record(1))  # a spool replayed after an unclear failure
    assert (await any_ledger.spend(by="model"))[0]["requests"] == 1


@pytest.mark.parametrize(("by", "value"), [
    ("model", "gpt-4o"), ("requested_model", "gpt-4o"), ("team", "t1"), ("key", "k1"), ("user", "u1"),
    ("upstream", "openai"), ("endpoint", "chat"), ("day", "2024-05-01")])
async def test_spend_by_each_dimension(any_ledger: BatchedLedger, by: str, value: str) -> None:
    any_ledger.add(record(1))
    assert await any_ledger.spend(by=by) == [{by: value, **ROW_SUMS}]


async def test_spend_by_tag_counts_a_row_under_each_of_its_tags(any_ledger: BatchedLedger) -> None:
    any_ledger.add(record(1, tags='["checkout", "exp-a"]', cost_nanos=300))
    any_ledger.add(record(2, tags='["checkout"]', cost_nanos=200))
    any_ledger.add(record(3, cost_nanos=50))
    rows = await any_ledger.spend(by="tag")
    assert [(row["tag"], row["requests"], row["cost_nanos"]) for row in rows] == [
        ("checkout", 2, 500), ("exp-a", 1, 300), (None, 1, 50)]
    only = await any_ledger.spend(by="team", tag="exp-a")
    assert [(row["team"], row["cost_nanos"]) for row in only] == [("t1", 300)]


async def test_spend_filters_and_time_range(any_ledger: BatchedLedger) -> None:
    any_ledger.add(record(1, model="cheap", cost_nanos=100, team="a"))
    any_ledger.add(record(2, model="dear", cost_nanos=900, team="b"))
    any_ledger.add(record(3, model="dear", cost_nanos=None, team="b"))
    rows = await any_ledger.spend(by="model")
    assert [(r["model"], r["requests"], r["cost_nanos"], r["unpriced_requests"]) for r in rows] == [
        ("dear", 2, 900, 1), ("cheap", 1, 100, 0)]
    assert [r["model"] for r in await any_ledger.spend(by="model", since=NOW + 2)] == ["dear"]
    assert [r["model"] for r in await any_ledger.spend(by="model", until=NOW + 2)] == ["cheap"]
    assert [r["model"] for r in await any_ledger.spend(by="model", team="a")] == ["cheap"]
    with pytest.raises(ValueError, match="use one of"):
        await any_ledger.spend(by="colour")


def retried_request() -> list:
    """req-1 failed on gpt-4o twice (refused, then billed for its prompt) and fell back to mini; req-2 is an
    unpriced model's request whose first attempt was billed (unpriced too). Each failed attempt is a row."""
    attempt = dict(parent_id="req-1", model="gpt-4o", status=503, error="upstream_unavailable", tags='["a"]')
    return [
        record(1, model="mini", upstream="c", attempt=3, fallback="unavailable", tags='["a"]', cost_nanos=1000),
        replace(record(1, upstream="a", attempt=1, cost_nanos=0, prompt_tokens=0, completion_tokens=0,
                       cached_prompt_tokens=0, reasoning_tokens=0, **attempt), request_id="req-1.1"),
        replace(record(1, upstream="b", attempt=2, cost_nanos=300, completion_tokens=0, usage_source="estimated",
                       **attempt), request_id="req-1.2"),
        record(2, model="x", upstream="c", attempt=2, cost_nanos=None),
        replace(record(2, model="x", upstream="c", attempt=1, cost_nanos=None, status=502, parent_id="req-2"),
                request_id="req-2.1"),
    ]


@pytest.mark.parametrize(("by", "expected"), [
    ("model", [("mini", 1, 1000, 0), ("gpt-4o", 0, 300, 0), ("x", 1, 0, 1)]),
    ("upstream", [("c", 2, 1000, 1), ("b", 0, 300, 0), ("a", 0, 0, 0)]),
    ("tag", [("a", 1, 1300, 0), (None, 1, 0, 1)]),
    ("day", [("2024-05-01", 2, 1300, 1)]),
])
async def test_spend_counts_requests_and_sums_every_billed_attempt(any_ledger: BatchedLedger, by: str,
                                                                   expected: list) -> None:
    for row in retried_request():
        any_ledger.add(row)
    rows = await any_ledger.spend(by=by)
    assert [(r[by], r["requests"], r["cost_nanos"], r["unpriced_requests"]) for r in rows] == expected
    assert sum(r["prompt_tokens"] for r in rows) == 4 * 10  # every row has one tag at most: summed once


async def test_policy_lookup_and_whole_rows(any_ledger: BatchedLedger) -> None:
    any_ledger.add(record(2, policies='{"p": {"mark": "treated"}}'))
    any_ledger.add(record(1, lookups='{"cache": {"result": "hit"}}', savings_nanos=7))
    any_ledger.add(record(3))
    assert [row["policies"] for row in await any_ledger.policy_rows()] == ['{"p": {"mark": "treated"}}']
    assert await any_ledger.fetch(sql.lookup_rows(any_ledger.dialect)) == [
        {"ts": NOW + 1, "cost_nanos": 1000, "savings_nanos": 7, "lookups": '{"cache": {"result": "hit"}}'}]
    rows = await any_ledger.fetch(sql.rows(any_ledger.dialect, sql.Filters(since=NOW + 2)))
    assert [row["request_id"] for row in rows] == ["req-2", "req-3"] and set(rows[0]) == set(COLUMNS)


async def test_an_older_schema_gains_the_new_columns_as_a_recorded_step(pg_dsn: str, tmp_path, monkeypatch) -> None:
    """A field added to SpendRecord becomes a column and a migration step, with no SQL written for it."""
    old_columns = [name for name in COLUMNS if name not in ("tags", "cache_write_1h_tokens")]
    definitions = ", ".join(f'"{name}" {sql.POSTGRES.types[COLUMNS[name]]}' for name in old_columns)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f"CREATE TABLE spend ({definitions}, PRIMARY KEY (request_id))")
        await conn.execute(f"INSERT INTO spend (request_id, ts, status) VALUES ('old-1', {NOW}, 200)")
        assert await migrate(conn) == ["spend-table", "columns:cache_write_1h_tokens,tags", "indexes-1"]
        assert await migrate(conn) == []  # idempotent
        steps = [tuple(row) for row in await conn.fetch("SELECT version, step FROM thriftgate_schema ORDER BY 1")]
        assert steps == [(1, "spend-table"), (2, "columns:cache_write_1h_tokens,tags"), (3, "indexes-1")]
        indexes = {row[0] for row in await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'spend'")}
        assert {"spend_ts", "spend_team_ts", "spend_tags", "spend_policies_ts"} <= indexes
    finally:
        await conn.close()
    ledger = PostgresLedger(postgres_config(pg_dsn, tmp_path, monkeypatch))
    await ledger.start()
    try:
        ledger.add(record(1, tags='["a"]'))
        assert (await ledger.get("req-1"))["tags"] == '["a"]'
        assert (await ledger.get("old-1"))["tags"] is None
    finally:
        await ledger.close()


async def test_sqlite_records_its_steps_too(tmp_path) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger(path)
    await ledger.start()
    await ledger.close()
    with sqlite3.connect(path) as conn:
        steps = [row[0] for row in conn.execute("SELECT step FROM thriftgate_schema ORDER BY version")]
    assert steps == ["spend-table", "indexes-1"]


async def test_an_sqlite_ledger_with_comma_separated_tags_gets_json_arrays(tmp_path) -> None:
    """The release before recorded steps kept tags comma-separated ("" for none): migrated to the array column."""
    path = tmp_path / "ledger.db"
    definitions = ", ".join(f'"{name}" {sql.SQLITE.types[kind]}' for name, kind in COLUMNS.items())
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE spend ({definitions}, PRIMARY KEY (request_id))")
        for n, tags in enumerate(("eu,nightly", "", None, 'say"hi')):
            conn.execute("INSERT INTO spend (request_id, ts, tags) VALUES (?, ?, ?)", (f"old-{n}", NOW, tags))
    conn.close()
    ledger = Ledger(path)
    await ledger.start()
    try:
        tags = [(await ledger.get(f"old-{n}"))["tags"] for n in range(4)]
        by_tag = {row["tag"]: row["requests"] for row in await ledger.spend(by="tag")}
    finally:
        await ledger.close()
    assert [None if t is None else json.loads(t) for t in tags] == [["eu", "nightly"], None, None, ['say"hi']]
    assert by_tag == {"eu": 1, "nightly": 1, None: 2, 'say"hi': 1}
    with sqlite3.connect(path) as conn:
        assert [row[0] for row in conn.execute("SELECT step FROM thriftgate_schema ORDER BY version")] == [
            "spend-table", "tags-json", "indexes-1"]
    conn.close()


def test_every_record_field_is_a_column_in_both_dialects() -> None:
    for dialect in (sql.SQLITE, sql.POSTGRES):
        [(_, [create])] = [step for step in sql.migration_steps(dialect, set(), set()) if step[0] == "spend-table"]
        assert all(f'"{name}"' in create for name in COLUMNS)
    assert json.loads(replace(record(1), tags='["x"]').tags) == ["x"]


async def test_a_nul_in_a_text_never_stops_the_ledger(any_ledger: BatchedLedger) -> None:
    """A client's Batch API custom_id becomes a row's request_id, a provider's error code its error: PostgreSQL's
    text holds no NUL (SQLite's does), and the refused batch went to the spool, to be refused at every replay
    while every row after it waited."""
    any_ledger.add(record(1, error="bad\x00code"))
    any_ledger.add(record(2))
    await any_ledger.flush()
    any_ledger.add(record(3))
    await any_ledger.flush()
    rows = {row["request_id"]: row for row in await any_ledger.recent(10)}
    assert sorted(rows) == ["req-1", "req-2", "req-3"]
    assert rows["req-1"]["error"] in ("bad\x00code", "bad\ufffdcode")  # SQLite keeps it; PostgreSQL, U+FFFD


async def test_a_row_postgresql_still_refuses_is_kept_aside_and_never_replayed(
    pg_dsn: str, tmp_path, monkeypatch
) -> None:
    """The last resort, for a value no fix-up makes storable (here a NUL left as it is): that row alone goes to
    refused.jsonl beside the spool; the batch's others are written and the database stays up."""
    from proxy.accounting import ledger_postgres

    monkeypatch.setattr(ledger_postgres, "_without_nul", lambda record: record)
    ledger = PostgresLedger(postgres_config(pg_dsn, tmp_path, monkeypatch, flush_interval_seconds=60))
    await ledger.start()
    try:
        ledger.add(record(1, error="bad\x00code"))
        ledger.add(record(2))
        await ledger.flush()
        assert [row["request_id"] for row in await ledger.recent(10)] == ["req-2"]
        assert ledger.health()["reachable"] and ledger.written_count == 1
        kept = [json.loads(line) for line in (tmp_path / "spool" / "refused.jsonl").read_text().splitlines()]
        assert [row["request_id"] for row in kept] == ["req-1"]
    finally:
        await ledger.close()
