"""PostgreSQL killed under load and started again: rows wait in the on-disk spool, /readyz says so,
the proxy recovers by itself, and no row is lost, also across a restart. The DSN's password is
never shown."""

import asyncio
import logging
from collections import Counter

import aiohttp
import asyncpg
import pytest

from proxy.appkeys import LEDGER
from tests.budgets.test_budgets import MAX_TOKENS, MESSAGES
from tests.conftest import RunningProxy, StartProxy
from tests.ledger.conftest import DSN_ENV
from tests.processes import PostgresServer

PASSWORD = "s3cret-pw"  # trust auth ignores it: it is here to prove it is never shown
BODY = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": MAX_TOKENS}


def ledger_section(tmp_path) -> dict:
    return {"backend": "postgres", "dsn_env": DSN_ENV, "spool_path": str(tmp_path / "spool"), "retry_seconds": 0.1,
            "flush_interval_seconds": 0.05, "timeout_seconds": 1}


async def readyz(session: aiohttp.ClientSession, proxy: RunningProxy) -> tuple[int, dict, str]:
    async with session.get(proxy.url + "/readyz") as response:
        return response.status, await response.json(), await response.text()


async def until(predicate, session, proxy) -> dict:
    for _ in range(200):
        status, body, _ = await readyz(session, proxy)
        if predicate(body):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"/readyz never got there: {body}")


async def stored_ids(server: PostgresServer) -> Counter:
    conn = await asyncpg.connect(server.dsn())
    try:
        return Counter(row[0] for row in await conn.fetch("SELECT request_id FROM spend"))
    finally:
        await conn.close()


async def test_postgres_killed_mid_load_loses_no_row(
    start_proxy: StartProxy, own_postgres: PostgresServer, tmp_path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "thriftgate")
    monkeypatch.setenv(DSN_ENV, own_postgres.dsn(PASSWORD))
    proxy = await start_proxy(ledger=ledger_section(tmp_path))
    sent: Counter = Counter()
    stopping = asyncio.Event()

    async def load(session: aiohttp.ClientSession) -> None:
        async def one() -> None:
            async with session.post(proxy.base_url + "/chat/completions", json=BODY) as response:
                await response.read()
                sent[response.status] += 1
        while not stopping.is_set():
            await asyncio.gather(*(one() for _ in range(8)))

    async with aiohttp.ClientSession() as session:
        traffic = asyncio.create_task(load(session))
        await asyncio.sleep(0.3)
        own_postgres.kill()
        down = await until(lambda body: not body["ledger"]["reachable"] and body["ledger"]["spooled_rows"], session,
                           proxy)
        status, _, text = await readyz(session, proxy)
        assert (status, down["status"]) == (200, "degraded")  # still serving: rows wait on disk
        assert PASSWORD not in text
        await asyncio.sleep(0.3)
        await own_postgres.start()
        await until(lambda body: body["ledger"]["reachable"] and not body["ledger"]["spooled_rows"], session, proxy)
        await asyncio.sleep(0.2)
        stopping.set()
        await traffic
        await proxy.app[LEDGER].flush()
        async with session.get(proxy.url + "/admin/spend", params={"by": "model"}) as response:
            spend = await response.json()

    assert set(sent) == {200} and sent[200] > 50
    ids = await stored_ids(own_postgres)
    assert sum(ids.values()) == sent[200] and set(ids.values()) == {1}  # every row, each once
    assert spend["source"] == "ledger" and spend["rows"][0]["requests"] == sent[200]
    assert "ledger database at postgresql://postgres:***@127.0.0.1" in caplog.text
    assert "unreachable" in caplog.text and "reachable again" in caplog.text
    assert PASSWORD not in caplog.text


async def test_rows_spooled_while_down_are_written_after_a_restart(
    start_proxy: StartProxy, own_postgres: PostgresServer, tmp_path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(DSN_ENV, own_postgres.dsn(PASSWORD))
    own_postgres.kill()  # down before the proxy starts: it starts anyway, and says so
    first = await start_proxy(ledger=ledger_section(tmp_path))
    async with aiohttp.ClientSession() as session:
        for _ in range(5):
            async with session.post(first.base_url + "/chat/completions", json=BODY) as response:
                assert response.status == 200
        body = await until(lambda body: body["ledger"]["spooled_rows"] == 5, session, first)
        assert body["status"] == "degraded"
        async with session.get(first.url + "/admin/requests/anything") as response:
            assert response.status == 503 and PASSWORD not in await response.text()
    await first.runner.cleanup()  # stopped while the database is still down
    assert "rows wait in" in caplog.text and PASSWORD not in caplog.text
    await own_postgres.start()
    second = await start_proxy(ledger=ledger_section(tmp_path))
    async with aiohttp.ClientSession() as session:
        await until(lambda body: body["ledger"]["reachable"] and not body["ledger"]["spooled_rows"], session, second)
    assert sum((await stored_ids(own_postgres)).values()) == 5
