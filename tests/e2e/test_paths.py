"""Routing decides on the decoded, normalised path: an encoded path cannot walk around prices, budgets and
policies, nor reach paths of the upstream's host outside /v1/; the pass-through is an allow-list."""

import json

import pytest

from proxy.control.keys import key_hash
from proxy.errors import BadRequest
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
    from proxy.config import ServerConfig

    assert "/v1/models" in ServerConfig().passthrough_paths
    with pytest.raises(ValueError):
        ServerConfig(passthrough_paths=["/v1/../admin"])
