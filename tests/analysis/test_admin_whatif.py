"""GET/POST /admin/whatif and the What-if section of /ui, on a running proxy's ledger."""

import base64
import aiohttp
import pytest

from tests.conftest import RunningProxy, StartProxy

CHAT = {"messages": [{"role": "user", "content": "Name three rivers."}]}
MASTER = "tg-master-for-whatif-tests"


@pytest.fixture
async def traffic(start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch) -> RunningProxy:
    monkeypatch.setenv("THRIFTGATE_MASTER_KEY", MASTER)
    proxy = await start_proxy()
    async with aiohttp.ClientSession() as session:
        for model, tags in (("gpt-4o", "nightly"), ("gpt-4o", "chat"), ("gpt-4o-mini", "")):
            async with session.post(proxy.base_url + "/chat/completions", json={"model": model, **CHAT},
                                    headers={"x-thriftgate-tags": tags}) as response:
                assert response.status == 200
    return proxy


async def call(proxy: RunningProxy, method: str, query: str = "", *, body=None, key: str | None = MASTER):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, proxy.url + "/admin/whatif" + query, json=body, headers=headers) as r:
            return r.status, r.content_type, (await r.json() if r.content_type == "application/json" else await r.text())


async def test_get_reprices_under_a_model_map(traffic: RunningProxy) -> None:
    status, _, report = await call(traffic, "GET", "?model=gpt-4o=gpt-4o-mini&by=tag")
    assert status == 200
    rows = await traffic.ledger.recent(10)
    actual = sum(row["cost_nanos"] for row in rows)
    assert report["total"]["actual_nanos"] == actual and report["total"]["affected_requests"] == 2
    assert {group["group"] for group in report["groups"]} == {"nightly", "chat", "(no tags)"}
    status, content_type, text = await call(traffic, "GET", "?model=gpt-4o=gpt-4o-mini&format=csv")
    assert (status, content_type) == (200, "text/csv") and text.splitlines()[0].startswith("model,requests,affected")


async def test_get_batch_eligibility(traffic: RunningProxy) -> None:
    status, _, report = await call(traffic, "GET", "?batch=1&latency_tolerant_tags=nightly")
    assert status == 200 and report["latency_tolerant_tags"] == ["nightly"]
    assert (report["total"]["eligible_requests"], report["total"]["tolerant_requests"]) == (3, 1)


async def test_post_takes_prices_and_policies_inline(traffic: RunningProxy) -> None:
    body = {"prices": {"models": {"gpt-4o": {"input": 0, "output": 0}, "gpt-4o-mini": {"input": 0, "output": 0}}},
            "policies": [{"name": "nope", "type": "deny", "match": {"tags": ["chat"]}}], "by": "policy"}
    status, _, report = await call(traffic, "POST", body=body)
    assert status == 200 and report["total"]["whatif_nanos"] == 0
    assert {group["group"] for group in report["groups"]} == {"nope", "(prices)"}


@pytest.mark.parametrize(("method", "query", "body", "param", "message"), [
    ("GET", "?model=gpt-4o", None, "model", "'model' must be FROM=TO"),
    ("GET", "?model=gpt-4o=gpt-9", None, None, "unknown model 'gpt-9'"),
    ("GET", "?since=yesterday", None, "since", "cannot read 'yesterday' as a time"),
    ("GET", "?by=colour", None, None, "cannot group by 'colour'"),
    ("GET", "?format=xml", None, "format", "'format' must be json or csv"),
    ("POST", "", {"prices": {"models": {"gpt-4o": {"input": -1}}}}, "prices", "prices.models: gpt-4o.input"),
    ("POST", "", {"policies": [{"type": "teleport"}]}, "policies", "policies[0].type: expected one of"),
    ("POST", "", {"model_map": ["gpt-4o"]}, "model_map", "'model_map' must map"),
])
async def test_bad_input_is_a_400_naming_it(traffic, method, query, body, param, message) -> None:
    status, _, answer = await call(traffic, method, query, body=body)
    assert status == 400, answer
    assert answer["error"]["param"] == param and message in answer["error"]["message"]


async def test_it_needs_the_master_key(traffic: RunningProxy) -> None:
    status, _, answer = await call(traffic, "GET", "?model=gpt-4o=gpt-4o-mini", key=None)
    assert status == 401


async def test_the_ui_section(traffic: RunningProxy) -> None:
    auth = {"Authorization": "Basic " + base64.b64encode(f"admin:{MASTER}".encode()).decode()}
    async with aiohttp.ClientSession(headers=auth) as session:
        async with session.get(traffic.url + "/ui") as response:
            page = await response.text()
        assert 'id="whatif-form"' in page and 'id="whatif"' not in page  # computed only when asked
        async with session.get(traffic.url + "/ui", params={"whatif": "gpt-4o=gpt-4o-mini", "batch": "1"}) as response:
            page = await response.text()
        assert 'id="whatif"' in page and 'id="batch"' in page and "exact: the same tokens at gpt-4o-mini&#x27;s price" in page
        async with session.get(traffic.url + "/ui", params={"whatif": "gpt-4o=<b>gpt-9</b>"}) as response:
            page = await response.text()
        assert response.status == 200 and 'id="whatif-error"' in page and "<b>gpt-9</b>" not in page
