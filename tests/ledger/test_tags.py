"""Tags from the x-thriftgate-tags header and a key's defaults: on every ledger row, spend by tag in the
admin API and the CLI, bounded on metrics, and a clear 400 for a bad header."""

import json

import aiohttp
import pytest

from proxy.appkeys import METRICS
from tests.budgets.test_budgets import MAX_TOKENS, MESSAGES
from tests.conftest import StartProxy
from tests.processes import thriftgate

MASTER = "master-key-for-tag-tests"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
BODY = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": MAX_TOKENS}


async def test_tags_reach_the_ledger_the_spend_reports_and_configured_metrics(
    start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("THRIFTGATE_MASTER_KEY", MASTER)
    proxy = await start_proxy(tags={"metrics": ["checkout"]})
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.url + "/admin/keys", headers=ADMIN,
                                json={"name": "shop", "team": "web", "tags": ["cust-1"]}) as response:
            assert response.status == 201, await response.text()
            created = await response.json()
        assert created["tags"] == ["cust-1"]
        key = {"Authorization": f"Bearer {created['key']}"}
        async with session.post(proxy.base_url + "/chat/completions", json=BODY,
                                headers={**key, "x-thriftgate-tags": "checkout, exp-a"}) as response:
            assert response.status == 200
            first = response.headers["x-thriftgate-request-id"]
        async with session.post(proxy.base_url + "/chat/completions", json=BODY,
                                headers={"x-thriftgate-tags": "exp-a"}) as response:
            assert response.status == 200
        async with session.get(proxy.url + "/admin/spend", params={"by": "tag"}, headers=ADMIN) as response:
            by_tag = await response.json()
    assert json.loads((await proxy.ledger.get(first))["tags"]) == ["checkout", "cust-1", "exp-a"]
    assert by_tag["source"] == "ledger"
    assert sorted((row["tag"], row["requests"]) for row in by_tag["rows"]) == [
        ("checkout", 1), ("cust-1", 1), ("exp-a", 2)]
    metrics = proxy.app[METRICS].render().decode()
    assert 'thriftgate_tag_requests_total{tag="checkout"} 1.0' in metrics
    assert 'tag="exp-a"' not in metrics and 'tag="cust-1"' not in metrics  # not configured: not a label
    await proxy.ledger.flush()
    result = thriftgate("spend", "--ledger", str(tmp_path / "ledger.db"), "--by", "tag", "--since", "1h", "--json")
    assert result.returncode == 0, result.stderr
    assert {row["tag"]: row["requests"] for row in json.loads(result.stdout)} == {
        "exp-a": 2, "checkout": 1, "cust-1": 1}


@pytest.mark.parametrize("header,problem", [
    (",".join(f"t{i}" for i in range(17)), "17 tags; at most 16"),
    ("ok, has space", "invalid tag 'has space'"),
    ("x" * 65, "invalid tag"),
    ("new\tline", "invalid tag"),
])
async def test_a_bad_tags_header_is_a_400_naming_it(start_proxy: StartProxy, header: str, problem: str) -> None:
    proxy = await start_proxy()
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/chat/completions", json=BODY,
                                headers={"x-thriftgate-tags": header}) as response:
            assert response.status == 400
            error = (await response.json())["error"]
    assert error["param"] == "x-thriftgate-tags" and error["code"] == "invalid_tags"
    assert "x-thriftgate-tags" in error["message"] and problem in error["message"]
