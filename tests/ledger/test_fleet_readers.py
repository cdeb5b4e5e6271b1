"""Two replicas writing one PostgreSQL ledger: whichever is asked, `/admin/requests/{id}`, `/admin/spend`,
`/ui` and `thriftgate savings` see the rows both wrote (issue 13: the readers read the whole fleet)."""

import json

import aiohttp
import pytest
import yaml

from proxy.appkeys import LEDGER
from tests.budgets.test_budgets import MAX_TOKENS, MESSAGES
from tests.conftest import StartProxy
from tests.ledger.conftest import DSN_ENV
from tests.processes import thriftgate

BODY = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": MAX_TOKENS}


async def test_each_replica_reads_what_the_other_wrote(start_proxy: StartProxy, pg_dsn: str, tmp_path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DSN_ENV, pg_dsn)

    def ledger(name: str) -> dict:
        return {"backend": "postgres", "dsn_env": DSN_ENV, "spool_path": str(tmp_path / f"spool-{name}")}

    policies = [{"type": "exact_cache", "name": "cache"}]
    first = await start_proxy(ledger=ledger("a"), policies=policies)
    second = await start_proxy(ledger=ledger("b"), policies=policies)
    async with aiohttp.ClientSession() as session:
        ids = []
        for replica, tags in ((first, "from-a"), (first, "from-a"), (second, "from-b")):
            async with session.post(replica.base_url + "/chat/completions", json=BODY,
                                    headers={"x-thriftgate-tags": tags}) as response:
                assert response.status == 200
                ids.append(response.headers["x-thriftgate-request-id"])
        for replica in (first, second):
            await replica.app[LEDGER].flush()
        async with session.get(f"{second.url}/admin/requests/{ids[0]}") as response:
            assert response.status == 200, await response.text()
            row = await response.json()
        async with session.get(f"{first.url}/admin/requests/{ids[2]}") as response:
            assert response.status == 200, await response.text()
        async with session.get(second.url + "/admin/spend", params={"by": "tag"}) as response:
            by_tag = await response.json()
        async with session.get(second.url + "/ui") as response:
            page = await response.text()
    assert json.loads(row["tags"]) == ["from-a"]
    assert by_tag["source"] == "ledger"
    assert sorted((r["tag"], r["requests"]) for r in by_tag["rows"]) == [("from-a", 2), ("from-b", 1)]
    assert all(request_id in page for request_id in ids)

    config = tmp_path / "thriftgate.yaml"
    config.write_text(yaml.safe_dump({"ledger": ledger("cli")}))
    result = thriftgate("savings", "--config", str(config), "--json", env={DSN_ENV: pg_dsn})
    assert result.returncode == 0, result.stderr
    [saving] = json.loads(result.stdout)
    assert (saving["policy"], saving["treated_requests"]) == ("cache", 3)  # the policy's rows of both replicas
