"""Retries: on another deployment at once, on the same one after its backoff and never before its Retry-After,
never a 400, never after a byte reached the client; the openai SDK's retries do not multiply them."""

import asyncio
import socket
import time

import openai
import pytest

from proxy.appkeys import ROUTING
from tests.fake_upstream import FakeUpstream
from tests.resilience.conftest import CHAT, MODEL, deployment, metric, post, rows


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("fault", ["429", "500", "502", "503", "reset", "timeout"])
async def test_a_failing_deployment_is_retried_on_the_other(start_routed, primary, secondary, fault) -> None:
    primary.faults(script=[fault], retry_after="30")
    proxy = await start_routed(deployment("a", primary), deployment("b", secondary), strategy="least_busy",
                               timeouts={"total": "0.5s"} if fault == "timeout" else {})
    status, body, headers = await post(proxy)
    assert status == 200 and body["choices"][0]["message"]["content"]
    assert (headers["x-thriftgate-upstream"], headers["x-thriftgate-attempts"]) == ("b", "2")
    assert "x-thriftgate-fallback" not in headers  # the same model, another deployment
    assert (primary.served, secondary.served) == (1, 1)
    failed, answered = await rows(proxy, headers["x-thriftgate-request-id"])
    assert (failed["upstream"], failed["attempt"], failed["parent_id"]) == ("a", 1, answered["request_id"])
    assert failed["request_id"] == answered["request_id"] + ".1" and failed["cost_nanos"] == 0
    assert (answered["upstream"], answered["attempt"], answered["status"]) == ("b", 2, 200)
    assert answered["cost_nanos"] > 0
    outcome = {"429": "rate_limited", "reset": "connect", "timeout": "timeout"}.get(fault, "server_error")
    assert metric(proxy, "thriftgate_upstream_attempts_total", upstream="a", outcome=outcome) == 1
    assert metric(proxy, "thriftgate_upstream_attempts_total", upstream="b", outcome="ok") == 1


async def test_an_unreachable_deployment_is_retried_on_the_other(start_routed, secondary) -> None:
    proxy = await start_routed(deployment("gone", f"http://127.0.0.1:{closed_port()}/v1"), deployment("b", secondary),
                               strategy="lowest_latency")  # not measured yet: the first is tried first
    status, _, headers = await post(proxy)
    assert status == 200 and headers["x-thriftgate-upstream"] == "b"
    failed, _ = await rows(proxy, headers["x-thriftgate-request-id"])
    assert (failed["status"], failed["error"]) == (502, "upstream_unreachable")



async def test_thriftgates_own_failure_carries_the_headers_of_an_upstream_answer(start_routed) -> None:
    """Nothing answered (unreachable): thriftgate's 502 still says which model, how many attempts, and where the
    last one went, as a relayed upstream error does."""
    proxy = await start_routed(deployment("gone", f"http://127.0.0.1:{closed_port()}/v1"), retries=1)
    status, body, headers = await post(proxy)
    assert status == 502 and body["error"]["code"] == "upstream_unreachable"
    assert (headers["x-thriftgate-model"], headers["x-thriftgate-upstream"]) == (MODEL, "gone")
    assert (headers["x-thriftgate-attempts"], headers["x-should-retry"]) == ("2", "false")

async def test_a_400_is_never_retried(start_routed, primary, secondary) -> None:
    primary.faults(script=["400"])
    proxy = await start_routed(deployment("a", primary), deployment("b", secondary), strategy="least_busy")
    status, body, headers = await post(proxy)
    assert status == 400 and body["error"]["param"] == "temperature"
    assert (primary.served, secondary.served) == (1, 0)
    assert "x-should-retry" not in headers  # a client error: whatever the SDK decides, it decides alone


async def test_the_same_deployment_is_retried_after_its_backoff_and_never_before_retry_after(
    start_routed, primary
) -> None:
    primary.faults(script=["429", "503", None], retry_after="0.3")
    proxy = await start_routed(deployment("a", primary))
    started = time.perf_counter()
    status, _, headers = await post(proxy)
    assert status == 200 and headers["x-thriftgate-attempts"] == "3"
    assert time.perf_counter() - started >= 0.6  # two waits of the provider's Retry-After, not the 5 ms backoff
    assert primary.served == 3


async def test_a_retry_after_longer_than_the_longest_backoff_is_not_waited_for(start_routed, primary) -> None:
    primary.faults(script=["429"], retry_after="30")
    proxy = await start_routed(deployment("a", primary))
    status, body, headers = await post(proxy)
    assert status == 429 and headers["Retry-After"] == "30"  # the provider's answer, as it came
    assert body["error"]["code"] == "rate_limit_exceeded" and primary.served == 1
    assert headers["x-should-retry"] == "false"  # thriftgate applied its policy: the SDK adds nothing
    # Resting: another request is answered at once, without bothering the provider before its time.
    status, body, headers = await post(proxy)
    assert status == 429 and body["error"]["code"] == "upstream_rate_limited" and primary.served == 1
    assert 28 <= int(headers["Retry-After"]) <= 30 and MODEL in body["error"]["message"]


async def test_retries_are_counted_per_model_and_end_with_the_last_answer(start_routed, primary) -> None:
    primary.faults(rate=1.0, choices=("500",))
    proxy = await start_routed(deployment("a", primary), retries=2)
    status, body, headers = await post(proxy)
    assert status == 500 and body["error"]["type"] == "server_error"
    assert headers["x-thriftgate-attempts"] == "3" and primary.served == 3
    attempts = await rows(proxy, headers["x-thriftgate-request-id"])
    assert [row["attempt"] for row in attempts] == [1, 2, 3]
    assert [row["error"] for row in attempts] == ["upstream_500"] * 3


async def test_the_openai_sdk_does_not_multiply_attempts(start_routed, primary) -> None:
    """docs/routing.md: a call makes at most (1 + retries) attempts per model of its chain; the SDK's own
    max_retries adds none, because thriftgate's failures say x-should-retry: false."""
    primary.faults(rate=1.0, choices=("503",))
    proxy = await start_routed(deployment("a", primary), retries=2)
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=2) as sdk:
        with pytest.raises(openai.InternalServerError):
            await sdk.chat.completions.create(**CHAT)
        assert primary.served == 3  # not 3 x 3
        with pytest.raises(openai.InternalServerError):
            await sdk.chat.completions.create(**CHAT, stream=True)
    assert primary.served == 6


async def test_with_retries_off_the_sdk_retries_as_it_would_without_thriftgate(start_routed, primary) -> None:
    primary.faults(rate=1.0, choices=("503",))
    proxy = await start_routed(deployment("a", primary), retries=0, cooldown={"after_failures": 10})
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=2) as sdk:
        with pytest.raises(openai.InternalServerError):
            await sdk.with_options(timeout=10).chat.completions.create(**CHAT)
    assert primary.served == 3  # the SDK's three


async def test_a_failure_before_the_first_byte_of_a_stream_is_retried(start_routed, primary, secondary) -> None:
    primary.faults(script=["stall"])
    proxy = await start_routed(deployment("a", primary), deployment("b", secondary), strategy="least_busy")
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(**CHAT, stream=True)
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in raw.parse() if chunk.choices])
    assert text == secondary.expected_text(CHAT["messages"])
    assert raw.headers["x-thriftgate-upstream"] == "b" and raw.headers["x-thriftgate-attempts"] == "2"
    failed, answered = await rows(proxy, raw.headers["x-thriftgate-request-id"])
    assert failed["error"] == "upstream_first_token_timeout" and answered["truncated"] is False
    # The stalled attempt had been accepted (its headers came): its prompt is counted as billed.
    assert failed["usage_source"] == "estimated" and failed["prompt_tokens"] > 0 and failed["cost_nanos"] > 0


async def test_a_client_that_leaves_during_a_retry_gets_no_further_attempts(start_routed, primary) -> None:
    primary.faults(script=["429"], retry_after="0.5")
    proxy = await start_routed(deployment("a", primary))
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0, timeout=0.2) as sdk:
        with pytest.raises(openai.APITimeoutError):
            await sdk.chat.completions.create(**CHAT)
    await eventually(lambda: metric(proxy, "thriftgate_requests_total", endpoint="chat", model=MODEL, status="499"))
    assert primary.served == 1
    failed, left = sorted(await proxy.ledger.recent(10), key=lambda row: row["parent_id"] is None)
    assert (failed["status"], failed["parent_id"]) == (429, left["request_id"])
    assert (left["status"], left["error"], left["client_disconnected"]) == (499, "client_closed_request", True)


async def eventually(check, seconds: float = 5.0) -> None:
    """Until check() holds: the handler of a request whose client left ends after the wait it was in."""
    deadline = time.perf_counter() + seconds
    while not check():
        assert time.perf_counter() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_model_renames_per_deployment(start_routed, primary, secondary) -> None:
    proxy = await start_routed(deployment("a", primary, model="gpt-4o-2024-08-06"))
    status, body, headers = await post(proxy)
    assert status == 200 and primary.requests[-1].body["model"] == "gpt-4o-2024-08-06"
    record = (await rows(proxy, headers["x-thriftgate-request-id"]))[-1]
    assert record["model"] == MODEL and record["cost_nanos"] > 0


def test_fake_upstream_faults_are_per_instance() -> None:
    """What the suite stands on: one instance's plan, not the request, decides its faults."""
    with FakeUpstream() as one, FakeUpstream() as other:
        one.faults(script=["500", None])
        client = openai.OpenAI(base_url=one.base_url, api_key=one.api_key, max_retries=0)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(**CHAT)
        assert client.chat.completions.create(**CHAT).choices[0].message.content
        other_client = openai.OpenAI(base_url=other.base_url, api_key=other.api_key, max_retries=0)
        assert other_client.chat.completions.create(**CHAT).choices[0].message.content


async def test_a_deployment_without_its_key_fails_over_without_cooling_down(start_routed, primary, secondary,
                                                                            monkeypatch) -> None:
    monkeypatch.delenv("THRIFTGATE_TEST_MISSING_KEY", raising=False)
    proxy = await start_routed(deployment("a", primary, api_key_env="THRIFTGATE_TEST_MISSING_KEY"),
                               deployment("b", secondary), strategy="lowest_latency", cooldown={"after_failures": 1})
    for _ in range(2):
        status, _, headers = await post(proxy)
        assert status == 200 and headers["x-thriftgate-upstream"] == "b"
    assert primary.served == 0
    failed, _ = await rows(proxy, headers["x-thriftgate-request-id"])
    assert failed["error"] == "upstream_key_missing"
    assert "a" not in proxy.app[ROUTING].health.states  # a missing key says nothing of its health
