"""Routing decides on the decoded, normalised path: an encoded path cannot walk around prices, budgets and
policies, nor reach paths of the upstream's host outside /v1/; the pass-through is an allow-list."""

import json

import pytest
import yaml

from proxy.config import ConfigError
from proxy.config_loading import load, validate
from proxy.control.keys import key_hash
from proxy.errors import BadRequest, NotFound
from proxy.server_config import ServerConfig
from proxy.stages.paths import PathRouter, normalise
from proxy.dialects import openai
from proxy.dialects.ingress import INGRESS
from tests.budgets.test_budgets import request_cost, usd
from tests.conftest import StartProxy
from tests.e2e.raw_http import raw_request

CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}).encode()
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("raw,expected", [
    ("/v1/chat%2Fcompletions", "/v1/chat/completions"),
    ("/v1/chat%2fcompletions", "/v1/chat/completions"),
    ("/v1//chat/./completions/", "/v1/chat/completions"),
    ("/v1/x/../chat/completions", "/v1/chat/completions"),
    ("/v1/x%2f..%2fmodels", "/v1/models"),
    ("/v1/models/ft:gpt-4o-mini:acme::abc", "/v1/models/ft:gpt-4o-mini:acme::abc"),
])
def test_paths_are_decoded_and_normalised(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize("raw", [
    "/v1/x%2f..%2f..%2fPATH", "/v1/..", "/v1/%2e%2e/admin", "/v1/../../etc/passwd", "/v1%2f..%2fadmin",
    "/v1/models%3Fx=1", "/v1/models%23x", "/v1/a%5c..%5cb", "/v1/a%0d%0aX: y", "/v1/a%2500", "/v1/%ff",
])
def test_paths_that_leave_v1_or_hide_a_separator_are_refused(raw: str) -> None:
    with pytest.raises(BadRequest):
        normalise(raw)


def test_the_normalised_path_goes_upstream_re_encoded_with_the_query_as_it_came() -> None:
    router = PathRouter(INGRESS, ["/v1/models/*"])
    route = router.resolve("POST", "/v1/chat%2Fcompletions", "a=%26b")
    assert (route.dialect, route.upstream_path) == (openai.CHAT, "/chat/completions?a=%26b")
    route = router.resolve("GET", "/v1/x/..//models/a%20b", "")
    assert (route.dialect, route.upstream_path) == (None, "/models/a%20b")


async def test_an_encoded_path_is_priced_and_budgeted_as_its_endpoint(
    start_proxy: StartProxy, fake
) -> None:
    proxy = await start_proxy(budgets=[{"scope": "global", "usd": usd(2 * request_cost()), "window": "day"}])
    statuses = []
    for target in ("/v1/chat%2Fcompletions", "/v1//chat/completions", "/v1/chat%2Fcompletions",
                   "/v1/x/%2e%2e/chat/completions"):
        answer = await raw_request(proxy.port, "POST", target, body=CHAT, headers=JSON)
        statuses.append(answer.status)
        if answer.status == 200:
            assert answer.headers["x-thriftgate-cost-usd"]
    assert statuses == [200, 200, 429, 429]  # on 0d52d64: 200 x 4, unpriced, through the pass-through
    assert [r.path for r in fake.requests] == ["/v1/chat/completions"] * 2
    rows = await proxy.ledger.recent(10)
    assert {row["endpoint"] for row in rows} == {"chat"}
    assert sum(row["cost_nanos"] or 0 for row in rows) == 2 * request_cost()


@pytest.mark.parametrize("target", ["/v1/x%2f..%2f..%2fadmin", "/v1/%2e%2e/%2e%2e/secret", "/v1/a%5c..%5c..%5cb"])
async def test_a_path_that_leaves_v1_is_refused_and_never_sent(start_proxy: StartProxy, fake, target: str) -> None:
    proxy = await start_proxy(server={"passthrough_paths": ["/v1/**"]})
    answer = await raw_request(proxy.port, "GET", target)
    assert answer.status == 400
    assert answer.json()["error"]["code"] == "invalid_path"
    assert fake.requests == []


async def test_the_pass_through_is_an_allow_list_of_openai_paths(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy()
    assert (await raw_request(proxy.port, "GET", "/v1/models")).status == 200
    assert (await raw_request(proxy.port, "GET", "/v1/x/../models/gpt-4o")).status == 200
    unknown = await raw_request(proxy.port, "GET", "/v1/internal/debug")
    assert unknown.status == 404 and unknown.json()["error"]["code"] == "not_found"
    assert [r.path for r in fake.requests] == ["/v1/models", "/v1/models/gpt-4o"]

    everything = await start_proxy(server={"passthrough_paths": ["/v1/**"]})
    assert (await raw_request(everything.port, "GET", "/v1/internal/debug")).status == 404  # the fake's own 404
    assert fake.requests[-1].path == "/v1/internal/debug"
    nothing = await start_proxy(server={"passthrough_paths": []})
    assert (await raw_request(nothing.port, "GET", "/v1/models")).status == 404
    assert len(fake.requests) == 3


async def test_with_keys_the_pass_through_applies_the_callers_key_team_and_request_budget(
    start_proxy: StartProxy, fake
) -> None:
    proxy = await start_proxy(
        auth={"keys": [{"id": "bot", "team": "support", "sha256": key_hash("tg-bot-key")}]},
        budgets=[{"scope": "team:support", "requests_per_minute": 2}],
    )
    keyed = {"Authorization": "Bearer tg-bot-key"}
    statuses = [(await raw_request(proxy.port, "GET", "/v1/models", headers=keyed)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert all(r.headers["Authorization"] == f"Bearer {fake.api_key}" for r in fake.requests)
    rows = await proxy.ledger.recent(10)
    assert {(row["endpoint"], row["key_id"], row["team"]) for row in rows} == {("passthrough", "bot", "support")}

    # An anonymous caller never gets the proxy's key: its own goes, or none.
    anonymous = await raw_request(proxy.port, "GET", "/v1/models")
    assert anonymous.status == 401  # the upstream's: no key was sent
    assert "Authorization" not in fake.requests[-1].headers
    own = await raw_request(proxy.port, "GET", "/v1/models", headers={"Authorization": "Bearer sk-own"})
    assert own.status == 401 and fake.requests[-1].headers["Authorization"] == "Bearer sk-own"


async def test_with_auth_required_an_anonymous_pass_through_is_refused(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(auth={"required": True})
    answer = await raw_request(proxy.port, "GET", "/v1/models")
    assert answer.status == 401 and answer.json()["error"]["code"] == "invalid_api_key"
    assert fake.requests == []


def test_the_shipped_allow_list_is_valid_config() -> None:
    assert "GET /v1/models" in ServerConfig().passthrough_paths
    with pytest.raises(ValueError):
        ServerConfig(passthrough_paths=["/v1/../admin"])


PAID = [("POST", "/v1/images/generations"), ("POST", "/v1/images/edits"), ("POST", "/v1/audio/speech"),
        ("POST", "/v1/audio/transcriptions"), ("POST", "/v1/fine_tuning/jobs"), ("POST", "/v1/uploads"),
        ("POST", "/v1/vector_stores"), ("POST", "/v1/assistants"), ("POST", "/v1/threads/runs"),
        ("POST", "/v1/threads/thread_1/runs"), ("POST", "/v1/responses/compact"),
        ("POST", "/v1/realtime/client_secrets"), ("POST", "/v1/videos"), ("POST", "/v1/messages/batches"),
        ("GET", "/v1/fine_tuning/jobs"), ("POST", "/v1/x/../images%2Fgenerations")]


@pytest.mark.parametrize("passthrough", [None, ["/v1/**"]])
async def test_paid_endpoints_the_proxy_does_not_price_are_refused_naming_the_setting(
    start_proxy: StartProxy, fake, passthrough: list[str] | None
) -> None:
    """On 7d701dd they were passed through by default: money spent that no usd or token budget counted."""
    proxy = await start_proxy(**({"server": {"passthrough_paths": passthrough}} if passthrough else {}))
    for method, target in PAID:
        answer = await raw_request(proxy.port, method, target, body=b"{}", headers=JSON)
        assert answer.status == 403, (method, target)
        error = answer.json()["error"]
        assert "server.unpriced_paid_paths" in error["message"]
        if target.startswith("/v1/messages"):
            assert error["type"] == "permission_error"  # Anthropic's shape for its path
        else:
            assert error["code"] == "unpriced_endpoint"
    assert fake.requests == []


async def test_a_paid_endpoint_the_operator_allows_is_passed_through_and_recorded(
    start_proxy: StartProxy, fake
) -> None:
    proxy = await start_proxy(server={"unpriced_paid_paths": ["POST /v1/images/generations"]})
    image = json.dumps({"model": "gpt-image-1", "prompt": "a cat"}).encode()
    answer = await raw_request(proxy.port, "POST", "/v1/images/generations", body=image, headers=JSON)
    assert answer.status == 404  # the fake's own: it has no images endpoint, but the request reached it
    assert (await raw_request(proxy.port, "POST", "/v1/audio/speech", body=b"{}", headers=JSON)).status == 403
    assert (await raw_request(proxy.port, "GET", "/v1/images/generations")).status == 403  # only the method listed
    assert [(r.method, r.path) for r in fake.requests] == [("POST", "/v1/images/generations")]
    rows = await proxy.ledger.recent(10)
    assert sorted((row["endpoint"], row["status"]) for row in rows) == [("passthrough", 403), ("passthrough", 403),
                                                                        ("passthrough", 404)]


@pytest.mark.parametrize("method,target,passed", [
    ("GET", "/v1/models", True), ("HEAD", "/v1/models", True), ("GET", "/v1/models/gpt-4o", True),
    ("DELETE", "/v1/models/ft:gpt-4o-mini:acme::abc", False),  # deletes the organisation's fine-tuned model
    ("POST", "/v1/models", False), ("POST", "/v1/moderations", True),
    ("GET", "/v1/chat/completions", False),  # every team's stored completions
    ("GET", "/v1/chat/completions/chatcmpl-1", True), ("GET", "/v1/chat/completions/chatcmpl-1/messages", True),
    ("DELETE", "/v1/chat/completions/chatcmpl-1", True), ("GET", "/v1/responses/resp_1", True),
    ("GET", "/v1/responses/resp_1/input_items", True), ("POST", "/v1/responses/resp_1/cancel", True),
    ("POST", "/v1/responses/input_tokens", True), ("POST", "/v1/responses/resp_1", False),
    ("POST", "/v1/conversations", True), ("GET", "/v1/conversations/conv_1/items", True),
])
async def test_the_default_pass_through_is_free_reads_by_method(
    start_proxy: StartProxy, fake, method: str, target: str, passed: bool
) -> None:
    proxy = await start_proxy()
    answer = await raw_request(proxy.port, method, target, body=b"{}" if method == "POST" else b"", headers=JSON)
    assert [(r.method, r.path) for r in fake.requests] == ([(method, target)] if passed else [])
    if not passed:
        assert answer.status == 404 and "server.passthrough_paths" in answer.json()["error"]["message"]


def test_entries_take_methods_and_get_allows_head() -> None:
    router = PathRouter(INGRESS, ["GET,DELETE /v1/things/*", "/v1/any"])
    assert router.resolve("HEAD", "/v1/things/a", "").dialect is None
    assert router.resolve("DELETE", "/v1/things/a", "").dialect is None
    assert router.resolve("PATCH", "/v1/any", "").dialect is None
    with pytest.raises(NotFound):
        router.resolve("POST", "/v1/things/a", "")


@pytest.mark.parametrize("server,expected", [
    ({"passthrough_paths": ["GET /v1/models", "/v1/images/generations"]},
     "server.passthrough_paths[1]: Value error, '/v1/images/generations' is a paid endpoint that thriftgate does not "
     "price; to pass it through anyway (counted against request budgets only), list it in server.unpriced_paid_paths"),
    ({"passthrough_paths": ["FETCH /v1/models"]}, "server.passthrough_paths[0]: Value error, 'FETCH /v1/models': "
     "unknown method FETCH"),
    ({"unpriced_paid_paths": ["/v1/images/../x"]}, "server.unpriced_paid_paths[0]: Value error, '/v1/images/../x': "
     "expected a /v1/ path"),
])
def test_config_mistakes_name_file_key_and_expectation(tmp_path, server: dict, expected: str) -> None:
    path = tmp_path / "thriftgate.yaml"
    path.write_text(yaml.safe_dump({"server": server}))
    with pytest.raises(ConfigError) as raised:
        load(path)
    assert str(raised.value).startswith(f"{path}: {expected}")


def test_check_config_warns_that_opted_in_paid_paths_escape_money_budgets() -> None:
    from proxy.config import warnings

    budgets = [{"scope": "team:a", "usd": 10, "window": "day"}]
    opted_in = validate({"server": {"unpriced_paid_paths": ["/v1/images/**"]}, "budgets": budgets})
    assert any(w.startswith("server.unpriced_paid_paths: /v1/images/** pass through unpriced") for w in warnings(opted_in))
    assert not any("unpriced_paid_paths" in w for w in warnings(validate({"budgets": budgets})))
