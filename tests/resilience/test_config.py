"""Deployments and routing as configured: mistakes refused at load naming the entry; which upstreams serve a
model; how the router shares requests among them; the admin view, guarded like every admin read."""

import random
from collections import Counter

import aiohttp
import pytest
import yaml

from proxy.config import ConfigError
from proxy.config_loading import validate
from proxy.routing.deployments import Deployments
from proxy.stages.upstream import UpstreamClient
from tests.resilience.conftest import MODEL, deployment, post


def refused(data: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        validate(data, source="t.yaml")
    return str(caught.value)


def upstream(name: str, *models: str, **extra) -> dict:
    return {"name": name, "base_url": f"http://{name}/v1", "models": list(models), **extra}


@pytest.mark.parametrize("data,message", [
    ({"upstreams": [upstream("a", "*"), upstream("b", "*", weight=0)]},
     "t.yaml: upstreams[1] (b).weight: Input should be greater than 0"),
    ({"upstreams": [upstream("a", "*", weight=-1)]}, "t.yaml: upstreams[0] (a).weight"),
    ({"upstreams": [upstream("a", "gpt-4o*", model="gpt-4o-2024-08-06")]}, "t.yaml: upstreams[0] (a): Value error, "
     "model renames what the client asks for"),
    ({"routing": {"fallbacks": [{"from": "gpt-4o", "to": ["gpt-4o-mini"]},
                                {"from": "gpt-4o-mini", "to": ["gpt-4o"]}]}},
     "t.yaml: routing.fallbacks[0] (gpt-4o): the chain loops: gpt-4o -> gpt-4o-mini -> gpt-4o"),
    ({"routing": {"fallbacks": [{"from": "gpt-4o", "to": ["gpt-4o"]}]}}, "the chain loops: gpt-4o -> gpt-4o"),
    ({"upstreams": [upstream("a", "gpt-*")], "routing": {"fallbacks": [{"from": "gpt-4o", "to": ["claude-x"]}]}},
     "t.yaml: routing.fallbacks[0].to[0]: no upstream serves the model 'claude-x'"),
    ({"upstreams": [upstream("a", "gpt-*")], "routing": {"fallbacks": [{"from": "llama", "to": ["gpt-4o"]}]}},
     "t.yaml: routing.fallbacks[0].from: no upstream serves the model 'llama'"),
    ({"routing": {"fallbacks": [{"from": "a", "to": ["b"]}, {"from": "a", "to": ["c"]}]}},
     "t.yaml: routing.fallbacks[1].from: 'a' already has fallbacks"),
    ({"routing": {"fallbacks": [{"from": "a", "to": ["b"], "on": ["sometimes"]}]}}, "routing.fallbacks[0].on[0]"),
    ({"routing": {"retry_on": [429, 400]}}, "t.yaml: routing.retry_on: Value error, 400 is never retried"),
    ({"routing": {"retry_on": [200]}}, "200 is not an error status"),
    ({"routing": {"timeouts": {"first_token": "soon"}}}, "routing.timeouts.first_token: Value error, expected seconds"),
    ({"routing": {"timeouts": {"total": 0}}}, "routing.timeouts.total: Input should be greater than 0"),
    ({"routing": {"strategy": "fastest"}}, "routing.strategy: Input should be 'weighted', 'least_busy' or"),
    ({"routing": {"retries": 11}}, "routing.retries: Input should be less than or equal to 10"),
    ({"upstreams": [upstream("a", "gpt-4o*"), upstream("azure", "gpt-4o", model="my-4o")]},
     "t.yaml: upstreams[1] (azure).models[0]: 'gpt-4o' is served first by upstreams[0] (a) through 'gpt-4o*'"),
])
def test_mistakes_are_refused_at_load_naming_the_entry(data: dict, message: str) -> None:
    assert message in refused(data)


def test_durations_read_with_units() -> None:
    routing = validate({"routing": {"timeouts": {"connect": "500ms", "first_token": 20, "total": "2m"},
                                    "cooldown": {"for": "1h", "within": "90s"}}}).routing
    assert (routing.timeouts.connect, routing.timeouts.first_token, routing.timeouts.total) == (0.5, 20.0, 120.0)
    assert (routing.cooldown.for_, routing.cooldown.within) == (3600.0, 90.0)


def deployments_of(*upstreams: dict) -> Deployments:
    config = validate({"upstreams": list(upstreams)})
    return Deployments(config.upstreams, UpstreamClient(config.upstreams, config.routing.timeouts).by_name, ())


def test_upstreams_listing_the_same_glob_are_deployments_of_its_models() -> None:
    found = deployments_of(upstream("a", "gpt-4o*"), upstream("b", "gpt-4o*", "o3*"), upstream("local", "llama-*"),
                           upstream("rest", "*"))
    assert [d.name for d in found.route("gpt-4o-mini").deployments] == ["a", "b"]
    assert [d.name for d in found.route("o3-mini").deployments] == ["b"]
    assert [d.name for d in found.route("llama-3.1-8b").deployments] == ["local"]
    assert [d.name for d in found.route("gpt-4.1").deployments] == ["rest"]  # a catch-all: only what nothing lists


def test_a_renaming_deployment_joins_those_listing_the_same_name() -> None:
    found = deployments_of(upstream("a", "gpt-4o", "gpt-4o-mini"), upstream("azure", "gpt-4o", model="my-4o"))
    assert [(d.name, d.model) for d in found.route("gpt-4o").deployments] == [("a", None), ("azure", "my-4o")]
    assert [d.name for d in found.route("gpt-4o-mini").deployments] == ["a"]


def test_one_upstream_per_model_routes_as_before() -> None:
    found = deployments_of(upstream("openai", "gpt-*", "o1*"), upstream("vllm", "llama-*"))
    assert found.route("gpt-4o").single.name == "openai" and found.route("llama-3").single.name == "vllm"
    assert found.route("mistral") is None


def test_limits_of_its_own_take_a_deployment_off_the_fast_path() -> None:
    assert deployments_of(upstream("a", "*", rpm=10)).route("gpt-4o").single is None


async def test_weights_share_the_requests(start_routed, primary, secondary) -> None:
    random.seed(7)
    proxy = await start_routed(deployment("a", primary, weight=3), deployment("b", secondary, weight=1))
    answered = Counter([(await post(proxy))[2]["x-thriftgate-upstream"] for _ in range(200)])
    assert 120 <= answered["a"] <= 180 and answered["a"] + answered["b"] == 200


async def test_a_deployment_at_its_own_rpm_is_skipped_until_the_next_minute(start_routed, primary, secondary,
                                                                            clock) -> None:
    proxy = await start_routed(deployment("a", primary, rpm=2), deployment("b", secondary, rpm=1),
                               changes={"clock": clock})
    statuses = [(await post(proxy))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429] and (primary.served, secondary.served) == (2, 1)
    status, body, headers = await post(proxy)
    assert body["error"]["code"] == "upstream_rate_limited" and headers["Retry-After"] == "60"
    clock.advance(60)
    assert (await post(proxy))[0] == 200


async def test_the_admin_view_is_guarded_like_every_admin_read(start_routed, primary, monkeypatch, clock) -> None:
    monkeypatch.setenv("THRIFTGATE_MASTER_KEY", "sk-master")
    proxy = await start_routed(deployment("a", primary, weight=2, rpm=100, model="gpt-4o-2024-08-06"),
                               changes={"clock": clock})
    await post(proxy)
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.url + "/admin/upstreams") as response:
            assert response.status == 401
        async with session.get(proxy.url + "/admin/upstreams",
                               headers={"Authorization": "Bearer sk-master"}) as response:
            shown = await response.json()
    assert shown["strategy"] == "weighted" and shown["health_shared"] is False
    a = next(row for row in shown["upstreams"] if row["name"] == "a")
    assert a | {"latency_ms": None} == {
        "name": "a", "base_url": primary.base_url, "models": [MODEL], "model": "gpt-4o-2024-08-06", "weight": 2.0,
        "rpm": 100, "tpm": None, "state": "up", "until": None, "failures_in_a_row": 0, "in_flight": 0,
        "latency_ms": None, "requests_this_minute": 1, "tokens_this_minute": None}
    assert a["latency_ms"] > 0



async def test_a_deployment_past_its_own_tpm_is_skipped_until_the_next_minute(start_routed, primary, secondary,
                                                                             clock) -> None:
    proxy = await start_routed(deployment("a", primary, tpm=30), deployment("b", secondary), strategy="least_busy",
                               changes={"clock": clock})
    answered = [(await post(proxy))[2]["x-thriftgate-upstream"] for _ in range(3)]
    assert answered == ["a", "b", "b"]  # a's first answer used more than its 30 tokens this minute
    clock.advance(60)
    assert (await post(proxy))[2]["x-thriftgate-upstream"] == "a"


async def test_lowest_latency_tries_each_once_then_keeps_to_the_quickest(start_routed, primary, secondary) -> None:
    primary.faults(latency_ms=80)
    proxy = await start_routed(deployment("a", primary), deployment("b", secondary), strategy="lowest_latency")
    answered = [(await post(proxy))[2]["x-thriftgate-upstream"] for _ in range(6)]
    assert answered == ["a", "b", "b", "b", "b", "b"]

ISSUE_EXAMPLE = """
upstreams:
  - {name: openai-a, base_url: https://api.openai.com/v1, api_key_env: OPENAI_KEY_A, models: ["gpt-4o*"], weight: 3}
  - {name: openai-b, base_url: https://api.openai.com/v1, api_key_env: OPENAI_KEY_B, models: ["gpt-4o*"], weight: 1, rpm: 500}
  - {name: local-vllm, base_url: http://vllm:8000/v1, models: ["llama-3.1-8b"]}
  - {name: claude, base_url: https://api.anthropic.com/v1, provider: anthropic, api_key_env: CLAUDE_KEY, models: ["claude-*"]}
routing:
  strategy: weighted          # weighted | least_busy | lowest_latency
  retries: 2                  # on another deployment of the same model, before any byte reached the client
  retry_on: [429, 500, 502, 503, 504, connect, timeout]
  cooldown: {after_failures: 3, within: 60s, for: 30s}     # a failing deployment sits out, then is probed
  timeouts: {connect: 5s, first_token: 20s, between_chunks: 30s, total: 600s}
  fallbacks:
    - {from: "gpt-4o", to: ["gpt-4o-mini", "claude-sonnet-4-5"], on: [unavailable, rate_limited, context_window_exceeded]}
"""


def test_the_shape_a_litellm_user_writes_loads_as_written(tmp_path, monkeypatch) -> None:
    """`on:` is YAML 1.1's true: the key still means what it says."""
    from proxy.config_loading import load

    monkeypatch.setenv("CLAUDE_KEY", "sk-ant-x")
    path = tmp_path / "thriftgate.yaml"
    path.write_text(ISSUE_EXAMPLE)
    config = load(path)
    [fallback] = config.routing.fallbacks
    assert (fallback.from_, fallback.to, fallback.on) == (
        "gpt-4o", ("gpt-4o-mini", "claude-sonnet-4-5"), ("unavailable", "rate_limited", "context_window_exceeded"))
    assert (config.routing.cooldown.for_, config.routing.timeouts.first_token) == (30.0, 20.0)
    assert [u.weight for u in config.upstreams[:2]] == [3.0, 1.0] and config.upstreams[1].rpm == 500


def test_check_config_shows_the_routing_keys_as_they_are_written(tmp_path, monkeypatch) -> None:
    """What `thriftgate check-config` prints names `from`, `for` and `try` as a config file writes them (it
    printed `from_`, `for_`, `try_model`), so the resolved routing section loads back as it is shown."""
    from proxy.config import masked_summary
    from proxy.config_loading import load

    monkeypatch.setenv("CLAUDE_KEY", "sk-ant-x")
    path = tmp_path / "thriftgate.yaml"
    path.write_text(ISSUE_EXAMPLE + "policies:\n  - {type: cascade, try: gpt-4o-mini}\n")
    config = load(path)
    shown = masked_summary(config)
    assert shown["routing"]["cooldown"]["for"] == 30.0
    assert shown["routing"]["fallbacks"][0]["from"] == "gpt-4o"
    assert shown["policies"][0]["try"] == "gpt-4o-mini"
    written = yaml.safe_load(ISSUE_EXAMPLE)
    assert validate({"upstreams": written["upstreams"], "routing": shown["routing"]}).routing == config.routing
