import asyncio
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.accounting.ledger import Ledger, SpendRecord, open_readonly, parse_since

REPO = Path(__file__).resolve().parents[1]
NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def record(n: int = 0, **changes) -> SpendRecord:
    base = SpendRecord(
        request_id=f"req-{n}", ts=NOW + n, endpoint="chat", requested_model="gpt-4o", model="gpt-4o",
        upstream="openai", key_id="k1", team="t1", user="u1", prompt_tokens=10, completion_tokens=5,
        cached_prompt_tokens=2, cache_write_tokens=0, reasoning_tokens=1, cost_nanos=1000,
        usage_source="upstream", status=200, stream=False, latency_ms=12.5, client_disconnected=False, error=None,
    )
    return replace(base, **changes)


class TracedLedger(Ledger):
    """Records every SQL statement the ledger runs, and gives up on a locked file at once."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.statements: list[str] = []

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=0.01)
        conn.set_trace_callback(self.statements.append)
        return conn

    @property
    def transactions(self) -> int:
        return sum(statement.startswith("BEGIN") for statement in self.statements)


@pytest.fixture
async def ledger():
    ledger = TracedLedger(":memory:", flush_interval=60)
    await ledger.start()
    yield ledger
    await ledger.close()


@pytest.fixture
def locker(tmp_path):
    """A second connection to ledger.db; `locker.execute("BEGIN EXCLUSIVE")` blocks the ledger's writes."""
    conn = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    yield conn
    conn.close()


async def test_added_records_are_visible_to_get_and_recent(ledger):
    ledger.add(record(1, stream=True, policies='{"cache": "hit"}'))
    ledger.add(record(2, cost_nanos=None))
    got = await ledger.get("req-1")
    assert got["stream"] is True and got["client_disconnected"] is False
    assert got["policies"] == '{"cache": "hit"}' and got["latency_ms"] == 12.5
    assert await ledger.get("missing") is None
    assert [row["request_id"] for row in await ledger.recent(limit=1)] == ["req-2"]
    assert ledger.written_count == 2 and ledger.pending_count == 0


async def test_spend_groups_sums_and_orders_by_cost(ledger):
    ledger.add(record(1, model="cheap", cost_nanos=100))
    ledger.add(record(2, model="dear", cost_nanos=900))
    ledger.add(record(3, model="dear", cost_nanos=None))
    rows = await ledger.spend(by="model")
    assert rows == [
        {"model": "dear", "requests": 2, "prompt_tokens": 20, "completion_tokens": 10, "cached_prompt_tokens": 4,
         "cache_write_tokens": 0, "reasoning_tokens": 2, "cost_nanos": 900, "unpriced_requests": 1},
        {"model": "cheap", "requests": 1, "prompt_tokens": 10, "completion_tokens": 5, "cached_prompt_tokens": 2,
         "cache_write_tokens": 0, "reasoning_tokens": 1, "cost_nanos": 100, "unpriced_requests": 0},
    ]
    assert [row["model"] for row in await ledger.spend(by="model", since=NOW + 2)] == ["dear"]
    assert [row["model"] for row in await ledger.spend(by="model", until=NOW + 2)] == ["cheap"]


@pytest.mark.parametrize(
    ("by", "value"),
    [("model", "gpt-4o"), ("requested_model", "gpt-4o"), ("team", "t1"), ("key", "k1"), ("user", "u1"),
     ("upstream", "openai"), ("endpoint", "chat"), ("language", "pt-br"), ("day", "2024-05-01")],
)
async def test_spend_by_each_key(ledger, by, value):
    ledger.add(record(1, language="pt-br"))
    assert await ledger.spend(by=by) == [
        {by: value, "requests": 1, "prompt_tokens": 10, "completion_tokens": 5, "cached_prompt_tokens": 2,
         "cache_write_tokens": 0, "reasoning_tokens": 1, "cost_nanos": 1000, "unpriced_requests": 0}
    ]


async def test_spend_by_unknown_key_lists_the_allowed_ones(ledger):
    allowed = "model, requested_model, team, key, user, upstream, endpoint, language, day"
    with pytest.raises(ValueError, match=f"use one of: {allowed}"):
        await ledger.spend(by="colour")


async def test_many_adds_are_written_in_few_transactions(ledger):
    ledger.statements.clear()  # the schema's migration ran at start
    for n in range(1000):
        ledger.add(record(n))
    await ledger.flush()
    assert ledger.transactions == 1
    # A few multi-row statements (the GIL is traded with the event loop once per statement): 3x256 + 7x32 + 2x4.
    assert sum(statement.startswith("INSERT") for statement in ledger.statements) == 12
    assert ledger.written_count == 1000
    assert sorted(row["request_id"] for row in await ledger.recent(1000)) == sorted(f"req-{n}" for n in range(1000))


async def test_a_request_id_written_twice_in_one_batch_keeps_its_last_row(ledger):
    ledger.add(record(1))
    ledger.add(record(1, cost_nanos=9000))
    await ledger.flush()
    assert [row["cost_nanos"] for row in await ledger.recent(10)] == [9000]


async def test_reaching_batch_size_wakes_the_flusher():
    ledger = TracedLedger(":memory:", flush_interval=60, batch_size=10)
    await ledger.start()
    try:
        for n in range(10):
            ledger.add(record(n))
        for _ in range(100):
            if ledger.written_count == 10:
                break
            await asyncio.sleep(0.01)
        assert ledger.written_count == 10
    finally:
        await ledger.close()


async def test_close_flushes_everything_pending_and_is_idempotent(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db", flush_interval=60)
    await ledger.start()
    for n in range(100):
        ledger.add(record(n))
    await ledger.close()
    await ledger.close()
    with open_readonly(tmp_path / "ledger.db") as reader:
        assert len(reader.recent(limit=1000)) == 100
    with pytest.raises(RuntimeError, match="not running"):
        ledger.add(record(101))


async def test_adds_from_many_tasks_lose_nothing(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db", flush_interval=0.005, batch_size=64)
    await ledger.start()

    async def add_many(task: int) -> None:
        for n in range(100):
            ledger.add(record(task * 100 + n))
            await asyncio.sleep(0)

    await asyncio.gather(*(add_many(task) for task in range(100)))
    await ledger.close()
    with open_readonly(tmp_path / "ledger.db") as reader:
        assert reader.spend(by="endpoint")[0]["requests"] == 10_000


async def test_an_older_file_gains_the_new_columns(tmp_path):
    path = tmp_path / "ledger.db"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE spend (request_id TEXT PRIMARY KEY, ts REAL, endpoint TEXT, model TEXT)")
        old.execute("INSERT INTO spend VALUES ('old-1', 1.0, 'chat', 'gpt-4')")
    old.close()
    ledger = Ledger(path)
    await ledger.start()
    try:
        ledger.add(record(1, policies="[]"))
        assert (await ledger.get("req-1"))["policies"] == "[]"
        assert (await ledger.get("old-1"))["policies"] is None
    finally:
        await ledger.close()


async def test_a_failed_write_keeps_the_batch_and_logs_once(tmp_path, locker, caplog):
    ledger = TracedLedger(tmp_path / "ledger.db", flush_interval=60)
    await ledger.start()
    try:
        locker.execute("BEGIN EXCLUSIVE")
        ledger.add(record(1))
        ledger.add(record(2))
        await ledger.flush()
        await ledger.flush()
        assert ledger.pending_count == 2 and ledger.written_count == 0
        assert len([r for r in caplog.records if r.name == "thriftgate.ledger" and r.levelno == logging.ERROR]) == 1
        locker.execute("ROLLBACK")
        await ledger.flush()
        assert ledger.pending_count == 0 and ledger.written_count == 2
    finally:
        await ledger.close()


async def test_close_saves_what_the_db_refuses_as_json_lines(tmp_path, locker, caplog):
    ledger = TracedLedger(tmp_path / "ledger.db", flush_interval=60)
    await ledger.start()
    locker.execute("BEGIN EXCLUSIVE")
    ledger.add(record(1, cost_nanos=None))
    ledger.add(record(2))
    await ledger.close()
    fallback = tmp_path / "ledger.db.unflushed.jsonl"
    lines = [json.loads(line) for line in fallback.read_text().splitlines()]
    assert [line["request_id"] for line in lines] == ["req-1", "req-2"]
    assert lines[0]["cost_nanos"] is None and lines[1]["stream"] is False
    assert str(fallback) in caplog.text


def test_open_readonly_reads_a_file_without_a_writer(tmp_path):
    path = tmp_path / "ledger.db"

    async def write() -> None:
        ledger = Ledger(path)
        await ledger.start()
        ledger.add(record(1, team=None))
        await ledger.close()

    asyncio.run(write())
    with open_readonly(path) as reader:
        assert reader.get("req-1")["team"] is None
        assert reader.get("missing") is None
        assert reader.spend(by="team", since=NOW)[0]["cost_nanos"] == 1000
        assert reader.recent()[0]["stream"] is False
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._conn.execute("DELETE FROM spend")
    with pytest.raises(FileNotFoundError):
        open_readonly(tmp_path / "absent.db")


SIGTERM_SCRIPT = textwrap.dedent(
    """
    import asyncio, signal, sys
    sys.path.insert(0, sys.argv[2])
    from proxy.accounting.ledger import Ledger
    from tests.test_ledger import record

    async def main():
        ledger = Ledger(sys.argv[1], flush_interval=60)
        await ledger.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        for n in range(500):
            ledger.add(record(n))
        print("pending", ledger.pending_count, flush=True)
        await stop.wait()
        await ledger.close()

    asyncio.run(main())
    """
)


def test_sigterm_with_records_pending_writes_them_all(tmp_path):
    path = tmp_path / "ledger.db"
    child = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_SCRIPT, str(path), str(REPO)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().split() == ["pending", "500"]
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=10) == 0
    finally:
        child.kill()
        child.stdout.close()
    with open_readonly(path) as reader:
        assert reader.spend(by="model")[0]["requests"] == 500


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", NOW - 86_400),
        ("7d", NOW - 7 * 86_400),
        ("30m", NOW - 1_800),
        ("90s", NOW - 90),
        (" 1.5h ", NOW - 5_400),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC).timestamp()),
        ("2024-05-01T12:00:00Z", NOW),
        ("2024-05-01T14:00:00+02:00", NOW),
        ("1714564800", NOW),
        ("1714564800.5", NOW + 0.5),
    ],
)
def test_parse_since(text, expected):
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "5w", "-3h", "nan", "2024-13-01"])
def test_parse_since_rejects_what_it_cannot_read(text):
    with pytest.raises(ValueError, match="use a duration"):
        parse_since(text, NOW)


async def test_a_row_sqlite_cannot_take_is_kept_aside_and_the_others_are_written(tmp_path, caplog):
    """A value past 64 bits failed the whole batch, and every batch after it: nothing more was recorded."""
    ledger = Ledger(tmp_path / "ledger.db", flush_interval=60)
    await ledger.start()
    try:
        ledger.add(record(1))
        ledger.add(record(2, prompt_tokens=2**64 - 1))
        ledger.add(record(3))
        await ledger.flush()
        assert ledger.written_count == 2 and ledger.pending_count == 0
        assert sorted(row["request_id"] for row in await ledger.recent(10)) == ["req-1", "req-3"]
        kept = [json.loads(line) for line in (tmp_path / "ledger.db.unflushed.jsonl").read_text().splitlines()]
        assert [(row["request_id"], row["prompt_tokens"]) for row in kept] == [("req-2", 2**64 - 1)]
        assert "refused 1 records (req-2...)" in caplog.text
        ledger.add(record(4))  # the next batch is written as usual
        await ledger.flush()
        assert ledger.written_count == 3
    finally:
        await ledger.close()
