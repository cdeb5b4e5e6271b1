"""Every bad input gets OpenAI's error shape and the right status; upstream errors are relayed."""

import json
import logging
import socket
from collections.abc import Mapping

import aiohttp
import openai
import pytest

from tests.conftest import RunningProxy, StartProxy

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def post(proxy: RunningProxy, path: str, **kwargs) -> tuple[int, dict | str, Mapping[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + path, **kwargs) as response:
            text = await response.text()
            try:
                body = json.loads(text)
            except ValueError:
                body = text  # an upstream's garbage, relayed as it came
            return response.status, body, response.headers


def assert_openai_error(body: dict, *, param: str | None = None) -> None:
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["param"] == param


async def test_malformed_json_is_400(proxy: RunningProxy) -> None:
    status, body, headers = await post(proxy, "/chat/completions", data=b'{"model": "gpt-4o-mini",')
    assert status == 400
    assert_openai_error(body)
    assert headers["x-thriftgate-request-id"].startswith("tg-")


@pytest.mark.parametrize("payload", [{"messages": []}, {"model": "", "messages": []}, {"model": 4}])
async def test_missing_model_is_400_naming_it(proxy: RunningProxy, payload: dict) -> None:
    status, body, _ = await post(proxy, "/chat/completions", json=payload)
    assert status == 400
    assert_openai_error(body, param="model")


@pytest.mark.parametrize("field,value", [("stream", "yes"), ("max_tokens", -1), ("stream_options", 3)])
async def test_bad_field_types_are_400_naming_the_param(proxy: RunningProxy, field: str, value) -> None:
    status, body, _ = await post(proxy, "/chat/completions", json={**CHAT, field: value})
    assert status == 400
    assert_openai_error(body, param=field)


async def test_non_object_body_is_400(proxy: RunningProxy) -> None:
    status, body, _ = await post(proxy, "/embeddings", data=b"[1, 2]")
    assert status == 400
    assert_openai_error(body)


async def test_body_over_the_limit_is_413(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(server={"max_body_bytes": 2048})
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 4096}]}
    status, body, _ = await post(proxy, "/chat/completions", json=big)
    assert status == 413
    assert_openai_error(body)
    assert body["error"]["code"] == "request_too_large"


async def test_unknown_route_is_404_in_openai_shape(proxy: RunningProxy) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.url + "/nope") as response:
            assert response.status == 404
            assert_openai_error(await response.json())
        async with session.post(proxy.url + "/healthz") as response:
            assert response.status == 405
            assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}
            assert_openai_error(await response.json())
        # The admin guard is on each admin route: a path no route serves is a 404 like any other.
        async with session.get(proxy.url + "/admin/nope") as response:
            assert response.status == 404
            assert_openai_error(await response.json())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_upstream_is_502(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(upstreams=[{"name": "gone", "base_url": f"http://127.0.0.1:{closed_port()}/v1"}])
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0) as sdk:
        with pytest.raises(openai.InternalServerError) as caught:
            await sdk.chat.completions.create(**CHAT)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_unreachable"
    record = (await proxy.ledger.recent(1))[0]
    assert (record["status"], record["error"], record["cost_nanos"]) == (502, "upstream_unreachable", 0)


async def test_upstream_timeout_is_504(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(
        upstreams=[{"name": "slow", "base_url": fake.base_url, "read_timeout_seconds": 0.3,
                    "api_key_env": "THRIFTGATE_TEST_UPSTREAM_KEY"}]
    )
    status, body, _ = await post(proxy, "/chat/completions", json=CHAT, headers={"x-fake-fault": "timeout"})
    assert status == 504
    assert body["error"]["code"] == "upstream_timeout"


async def test_upstream_rate_limit_is_relayed_as_it_came(proxy: RunningProxy, fake) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/chat/completions", json=CHAT,
                                headers={"x-fake-fault": "429"}) as response:
            via_proxy = (response.status, await response.read(), response.headers.get("Retry-After"))
        async with session.post(fake.base_url + "/chat/completions", json=CHAT,
                                headers={"x-fake-fault": "429", "Authorization": f"Bearer {fake.api_key}"}) as response:
            direct = (response.status, await response.read(), response.headers.get("Retry-After"))
    assert via_proxy == direct
    assert via_proxy[0] == 429 and via_proxy[2]
    record = (await proxy.ledger.recent(1))[0]
    assert (record["status"], record["error"], record["cost_nanos"]) == (429, "upstream_429", 0)


async def test_streamed_request_to_a_failing_upstream_gets_the_json_error(proxy: RunningProxy) -> None:
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0) as sdk:
        with pytest.raises(openai.InternalServerError) as caught:
            await sdk.chat.completions.create(**CHAT, stream=True, extra_headers={"x-fake-fault": "500"})
    assert caught.value.status_code == 500


async def test_a_cut_stream_ends_with_an_error_event_and_is_recorded_truncated(proxy: RunningProxy) -> None:
    """Issue 10 (5): on 0d52d64 the stream just ended, and neither the SDK nor curl could tell."""
    chunks = []
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(**CHAT, stream=True, extra_headers={"x-fake-fault": "cut"})
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream:
                chunks.append(chunk)
    assert chunks and caught.value.code == "upstream_stream_cut"
    record = await proxy.last_row()
    assert (record["error"], record["truncated"], record["status"]) == ("upstream_stream_cut", True, 200)
    assert record["usage_source"] == "estimated"
    assert record["completion_tokens"] > 0


async def test_a_request_that_already_passed_the_proxy_is_refused(proxy: RunningProxy) -> None:
    status, body, _ = await post(proxy, "/chat/completions", json=CHAT, headers={"x-thriftgate-hop": "1"})
    assert status == 508
    assert body["error"]["code"] == "loop_detected"


async def test_unpriced_model_is_served_and_metered(proxy: RunningProxy) -> None:
    status, _, headers = await post(proxy, "/chat/completions", json={**CHAT, "model": "llama-3.1-70b"})
    assert status == 200
    assert "x-thriftgate-cost-usd" not in headers
    record = (await proxy.ledger.recent(1))[0]
    assert record["cost_nanos"] is None and record["completion_tokens"] > 0
    assert b'thriftgate_unpriced_requests_total{model="other"} 1.0' in proxy.metrics.render()


async def test_unpriced_model_can_be_refused(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(pricing={"unpriced": "reject"})
    status, body, _ = await post(proxy, "/chat/completions", json={**CHAT, "model": "llama-3.1-70b"})
    assert status == 400
    assert body["error"]["code"] == "model_not_priced"


async def test_keys_never_reach_logs_errors_or_the_ledger(
    proxy: RunningProxy, fake, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client_key = "sk-client-secret-123456"
    bodies = []
    for fault in ("500", "429", "400", "garbage"):
        _, body, _ = await post(proxy, "/chat/completions", json=CHAT,
                                headers={"x-fake-fault": fault, "Authorization": f"Bearer {client_key}"})
        bodies.append(repr(body))
    ledger_rows = repr(await proxy.ledger.recent(10))
    for secret in (fake.api_key, client_key):
        assert secret not in caplog.text
        assert secret not in ledger_rows
        assert all(secret not in body for body in bodies)
    # The upstream got the proxy's key, not the client's.
    assert all(r.headers["Authorization"] == f"Bearer {fake.api_key}" for r in fake.requests)
