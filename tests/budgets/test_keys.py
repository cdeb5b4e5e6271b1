"""Virtual keys: created, used, revoked through the admin API and the CLI; 401s; the master key guard."""

import asyncio
import base64
import logging
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from proxy.appkeys import METRICS
from proxy.stages.auth import Auth
from proxy.control.config import AuthConfig
from proxy.errors import ServiceUnavailable
from proxy.exchange import Exchange
from proxy.control.keys import key_hash
from proxy.store import KeyRecord, StoreUnavailable
from proxy.store.memory import MemoryStore
from tests.shared import FakeClock
from tests.conftest import RunningProxy, StartProxy

MASTER = "master-key-for-tests"
MASTER_ENV = "THRIFTGATE_MASTER_KEY"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def master(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(MASTER_ENV, MASTER)
    return MASTER


async def call(proxy: RunningProxy, method: str, path: str, *, key: str | None = None,
               headers: dict | None = None, **kwargs: Any) -> tuple[int, Any, Any]:
    headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, proxy.url + path, headers=headers, **kwargs) as response:
            body = await response.json(content_type=None) if response.content_type == "application/json" else None
            return response.status, body, response.headers


async def create_key(proxy: RunningProxy, **fields: Any) -> dict:
    status, body, _ = await call(proxy, "POST", "/admin/keys", headers=ADMIN, json=fields)
    assert status == 201, body
    return body


async def test_keys_created_used_and_revoked_through_the_admin_api(
    start_proxy: StartProxy, store_section: dict, master: str, fake, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = await start_proxy(store=store_section, auth={"required": True, "keys": [
        {"id": "declared", "team": "support", "sha256": key_hash("tg-declared-key")}]})
    created = await create_key(proxy, name="billing-bot", team="support")
    key = created["key"]
    assert key.startswith("tg-") and len(key) == 35
    assert (created["id"], created["team"], created["revoked_at"], created["source"]) == (
        "billing-bot", "support", None, "store")

    status, body, headers = await call(proxy, "POST", "/v1/chat/completions", key=key, json=CHAT)
    assert status == 200
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {fake.api_key}"  # the proxy's key, never ours
    record = await proxy.ledger.get(headers["x-thriftgate-request-id"])
    assert (record["key_id"], record["team"]) == ("billing-bot", "support")
    status, _, headers = await call(proxy, "POST", "/v1/chat/completions", key="tg-declared-key", json=CHAT,
                                    headers={"x-thriftgate-user": "alice"})
    record = await proxy.ledger.get(headers["x-thriftgate-request-id"])
    assert status == 200 and (record["key_id"], record["team"], record["user"]) == ("declared", "support", "alice")

    status, listed, _ = await call(proxy, "GET", "/admin/keys", headers=ADMIN)
    assert [(k["id"], k["source"]) for k in listed["keys"]] == [("billing-bot", "store"), ("declared", "config")]
    assert all("sha256" not in k and "key" not in k for k in listed["keys"])

    status, revoked, _ = await call(proxy, "DELETE", "/admin/keys/billing-bot", headers=ADMIN)
    assert status == 200 and revoked["revoked_at"] is not None
    status, body, _ = await call(proxy, "POST", "/v1/chat/completions", key=key, json=CHAT)
    assert status == 401 and body["error"]["code"] == "invalid_api_key" and "revoked" in body["error"]["message"]
    status, shown, _ = await call(proxy, "GET", "/admin/keys/billing-bot", headers=ADMIN)
    assert status == 200 and shown["revoked_at"] == revoked["revoked_at"]
    status, body, _ = await call(proxy, "DELETE", "/admin/keys/declared", headers=ADMIN)
    assert status == 409 and "config" in body["error"]["message"]
    status, body, _ = await call(proxy, "POST", "/admin/keys", headers=ADMIN, json={"name": "billing-bot", "team": "x"})
    assert status == 409  # the id of a revoked key stays taken: the ledger keeps meaning one key

    await proxy.ledger.flush()
    rows = await proxy.ledger.recent(10)
    seen = caplog.text + repr(rows) + proxy.app[METRICS].render().decode()
    assert key not in seen and "tg-declared-key" not in seen and key_hash(key) not in seen


async def test_without_a_valid_key_requests_get_401(start_proxy: StartProxy, store_section: dict, master: str) -> None:
    proxy = await start_proxy(store=store_section, auth={"required": True})
    for key in (None, "sk-not-ours", "tg-unknown", MASTER):
        status, body, headers = await call(proxy, "POST", "/v1/chat/completions", key=key, json=CHAT)
        assert status == 401, key
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "invalid_api_key"
        assert headers["x-thriftgate-request-id"].startswith("tg-")
    status, _, _ = await call(proxy, "GET", "/v1/models", key="tg-unknown")
    assert status == 401  # passed-through routes too


async def test_with_auth_off_an_unknown_thriftgate_key_is_refused_and_others_pass(
    start_proxy: StartProxy, store_section: dict, master: str, fake
) -> None:
    proxy = await start_proxy(store=store_section)
    assert (await call(proxy, "POST", "/v1/chat/completions", key="tg-unknown", json=CHAT))[0] == 401
    assert (await call(proxy, "POST", "/v1/chat/completions", json=CHAT))[0] == 200
    key = (await create_key(proxy, name="bot", team="research"))["key"]
    status, _, headers = await call(proxy, "POST", "/v1/chat/completions", key=key, json=CHAT)
    assert status == 200 and (await proxy.ledger.get(headers["x-thriftgate-request-id"]))["team"] == "research"


async def test_the_master_key_guards_the_admin_routes(start_proxy: StartProxy, master: str) -> None:
    proxy = await start_proxy(auth={"required": True})
    for method, path in (("GET", "/admin/keys"), ("POST", "/admin/keys"), ("GET", "/admin/spend"),
                         ("GET", "/admin/requests/tg-x"), ("DELETE", "/admin/keys/x"), ("POST", "/admin/reload")):
        for key in (None, "wrong", "tg-anything"):
            status, body, _ = await call(proxy, method, path, key=key)
            assert status == 401, (method, path, key)
            assert body["error"]["code"] == "invalid_api_key"
    assert (await call(proxy, "GET", "/admin/spend", key=MASTER))[0] == 200
    status, _, headers = await call(proxy, "GET", "/ui")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    basic = "Basic " + base64.b64encode(f"admin:{MASTER}".encode()).decode()
    assert (await call(proxy, "GET", "/ui", headers={"Authorization": basic}))[0] == 200


async def test_without_a_master_key_the_keys_api_is_closed(
    start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MASTER_ENV, raising=False)
    proxy = await start_proxy()
    status, body, _ = await call(proxy, "GET", "/admin/keys", key="anything")
    assert status == 403 and MASTER_ENV in body["error"]["message"]
    assert (await call(proxy, "GET", "/admin/spend"))[0] == 200  # auth off, no master key: as before


@pytest.mark.parametrize("fields,param", [
    ({"team": "support"}, "name"),
    ({"name": "bot"}, "team"),
    ({"name": "has space", "team": "support"}, "name"),
    ({"name": "bot", "team": "support", "budget_usd_per_day": -1}, "budget_usd_per_day"),
    ({"name": "bot", "team": "support", "budget_usd_per_day": "lots"}, "budget_usd_per_day"),
    # Past 2**53 nano-dollars Redis's counters are not exact; an exponent that large would take minutes to expand.
    ({"name": "bot", "team": "support", "budget_usd_per_day": 10_000_000}, "budget_usd_per_day"),
    ({"name": "bot", "team": "support", "budget_usd_per_day": "1e999999999"}, "budget_usd_per_day"),
    ({"name": "bot", "team": "support", "owner": "me"}, "owner"),
])
async def test_malformed_key_requests_are_400_naming_the_field(
    start_proxy: StartProxy, master: str, fields: dict, param: str
) -> None:
    proxy = await start_proxy()
    status, body, _ = await call(proxy, "POST", "/admin/keys", headers=ADMIN, json=fields)
    assert status == 400 and body["error"]["param"] == param


async def test_a_key_budget_limits_that_key(start_proxy: StartProxy, store_section: dict, master: str) -> None:
    proxy = await start_proxy(store=store_section, auth={"required": True, "keys": [
        {"id": "declared", "team": "support", "sha256": key_hash("tg-declared-key")}]})
    key = (await create_key(proxy, name="cheap", team="growth", budget_usd_per_day="0.00001"))["key"]
    statuses = [(await call(proxy, "POST", "/v1/chat/completions", key=key, json=CHAT))[0] for _ in range(4)]
    assert statuses == [200, 200, 429, 429]  # each costs $0.0000042 at most
    _, body, headers = await call(proxy, "POST", "/v1/chat/completions", key=key, json=CHAT)
    assert "key:cheap" in body["error"]["message"] and headers["x-thriftgate-budget-scope"] == "key:cheap"
    assert (await call(proxy, "POST", "/v1/chat/completions", key="tg-declared-key", json=CHAT))[0] == 200
    metrics = proxy.app[METRICS].render().decode()
    assert 'team="other"' in metrics and 'team="support"' in metrics  # growth is not a configured team
    assert "cheap" not in metrics


async def test_a_revocation_reaches_other_replicas(
    start_proxy: StartProxy, redis_prefix: str, master: str
) -> None:
    store = {"backend": "redis", "redis_url": "redis://127.0.0.1:6379/0", "key_prefix": redis_prefix}
    one = await start_proxy(store=store, auth={"required": True})
    two = await start_proxy(store=store, auth={"required": True, "key_cache_seconds": 0})
    key = (await create_key(one, name="bot", team="support"))["key"]
    assert (await call(two, "POST", "/v1/chat/completions", key=key, json=CHAT))[0] == 200
    await call(one, "DELETE", "/admin/keys/bot", headers=ADMIN)
    assert (await call(two, "POST", "/v1/chat/completions", key=key, json=CHAT))[0] == 401


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", *args, cwd=ROOT, env={**os.environ, MASTER_ENV: MASTER},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_creates_lists_and_revokes_keys(start_proxy: StartProxy, master: str) -> None:
    proxy = await start_proxy(auth={"required": True})
    code, out, err = await run_cli("keys", "create", "--url", proxy.url, "--name", "billing-bot",
                                      "--team", "support", "--budget-usd-per-day", "20")
    assert code == 0, err
    key = out.strip()
    assert key.startswith("tg-") and "cannot show it again" in err and "$20 a day" in err
    assert (await call(proxy, "POST", "/v1/chat/completions", key=key, json=CHAT))[0] == 200
    code, out, _ = await run_cli("keys", "list", "--url", proxy.url)
    assert code == 0 and "billing-bot" in out and "active" in out and "$20/day" in out and key not in out
    code, out, _ = await run_cli("keys", "revoke", "billing-bot", "--url", proxy.url)
    assert code == 0 and "revoked" in out
    assert (await call(proxy, "POST", "/v1/chat/completions", key=key, json=CHAT))[0] == 401
    code, _, err = await run_cli("keys", "revoke", "nobody", "--url", proxy.url)
    assert code == 1 and "404" in err and "nobody" in err


class FlakyStore(MemoryStore):
    """Answers key lookups until told the store is down."""

    shared = True
    down = False

    async def key_by_hash(self, sha256: str):
        if self.down:
            raise StoreUnavailable("The budget store (Redis at redis://nowhere) is unreachable.", attempted=True)
        return await super().key_by_hash(sha256)


async def test_a_key_known_before_the_store_went_down_keeps_working() -> None:
    store, clock = FlakyStore(), FakeClock()
    auth = Auth(AuthConfig(required=True, key_cache_seconds=5), store, clock=clock)
    await store.add_key(KeyRecord("bot", "support", key_hash("tg-known"), created_at=1.0))

    async def authenticate(key: str) -> Exchange:
        request = make_mocked_request("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"})
        ex = Exchange(request, "chat")
        await auth.authenticate(ex)
        return ex

    assert (await authenticate("tg-known")).key_id == "bot"
    store.down = True
    clock.advance(6)  # the cached entry is stale: the store is asked, fails, and the stale entry serves
    assert (await authenticate("tg-known")).team == "support"
    with pytest.raises(ServiceUnavailable, match="cannot be checked"):
        await authenticate("tg-never-seen")


async def test_with_more_keys_in_use_than_the_cache_holds_only_the_oldest_goes_back_to_the_store(monkeypatch) -> None:
    from proxy.stages import auth as auth_stage

    monkeypatch.setattr(auth_stage, "_CACHE_LIMIT", 3)
    store, clock = FlakyStore(), FakeClock()
    auth = Auth(AuthConfig(required=True, key_cache_seconds=60), store, clock=clock)
    for name in ("a", "b", "c", "d"):
        await store.add_key(KeyRecord(name, "support", key_hash(f"tg-{name}"), created_at=1.0))

    async def authenticate(key: str) -> str:
        request = make_mocked_request("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"})
        ex = Exchange(request, "chat")
        await auth.authenticate(ex)
        return ex.key_id

    for name in ("a", "b", "c", "d"):  # d pushes a out: b, c and d stay
        assert await authenticate(f"tg-{name}") == name
    store.down = True
    assert [await authenticate(f"tg-{name}") for name in ("b", "c", "d")] == ["b", "c", "d"]
    with pytest.raises(ServiceUnavailable):
        await authenticate("tg-a")
