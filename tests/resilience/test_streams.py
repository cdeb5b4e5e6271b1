"""Streams that fail honestly: a stream cut or stalled after bytes reached the client ends with an OpenAI-style
error event (the SDKs raise it), never a clean [DONE]; the ledger marks it truncated and bills what was
delivered. A first token that never comes fails over within its timeout."""

import time

import aiohttp
import openai
import pytest

from proxy.accounting.usage import Usage
from proxy.appkeys import PRICES
from proxy.config_loading import validate
from proxy.routing.config import RoutingConfig
from tests.resilience.conftest import CHAT, MODEL, deployment, metric, rows

WORDS = 40  # the fake's default reply: one token a word, one event a token


def sdk(proxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0)


async def read_until_error(stream) -> tuple[str, openai.APIError]:
    text = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            if chunk.choices:
                text.append(chunk.choices[0].delta.content or "")
    return "".join(text), caught.value


@pytest.mark.parametrize("fault,code", [("cut:12", "upstream_stream_cut"), ("stall:12", "upstream_stream_stalled")])
async def test_a_stream_broken_after_it_began_ends_with_an_error_event_and_is_truncated(
    start_routed, primary, secondary, fault, code
) -> None:
    """The regression of issue 10 (5): on 0d52d64 the SDK saw a clean end and no error."""
    primary.faults(script=[fault])
    proxy = await start_routed(deployment("a", primary), deployment("b", secondary), strategy="least_busy")
    async with sdk(proxy) as client:
        raw = await client.chat.completions.with_raw_response.create(**CHAT, stream=True)
        text, error = await read_until_error(raw.parse())
    assert error.code == code and "incomplete" in error.message
    assert text and primary.expected_text(CHAT["messages"]).startswith(text) and len(text.split()) < WORDS
    assert secondary.served == 0  # bytes had reached the client: never sent again
    [record] = await rows(proxy, raw.headers["x-thriftgate-request-id"])
    assert (record["status"], record["error"], record["truncated"]) == (200, code, True)
    # Billed what was delivered: the prompt, and the tokens that reached the client, to the nano-dollar.
    delivered = primary.token_count(text)
    assert (record["completion_tokens"], record["usage_source"]) == (delivered, "estimated")
    billed = proxy.app[PRICES].cost_nanos(MODEL, Usage(prompt_tokens=record["prompt_tokens"],
                                                       completion_tokens=delivered))
    assert record["cost_nanos"] == billed > 0
    assert metric(proxy, "thriftgate_upstream_attempts_total", upstream="a", outcome="truncated") == 1


async def test_a_responses_stream_cut_short_ends_with_its_error_event(start_routed, primary) -> None:
    primary.faults(script=["cut:5"])
    proxy = await start_routed(deployment("a", primary))
    async with sdk(proxy) as client:
        stream = await client.responses.create(model=MODEL, input="Name three rivers.", stream=True)
        kinds = [event.type async for event in stream]
    assert kinds[-1] == "error" and "response.completed" not in kinds
    record = await proxy.last_row()
    assert record["truncated"] is True and record["error"] == "upstream_stream_cut"


async def test_an_upstream_error_event_is_relayed_once(start_routed, primary) -> None:
    """A stream the upstream ends with an error event of its own: the client has it, thriftgate adds none."""
    primary.faults(script=["error-event:6"])
    proxy = await start_routed(deployment("a", primary))
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/chat/completions", json={**CHAT, "stream": True}) as response:
            events = (await response.read()).split(b"\n\n")
    errors = [event for event in events if event.startswith(b'data: {"error"')]
    assert len(errors) == 1 and b"Sorry" in errors[0] and b"data: [DONE]" not in events
    record = (await proxy.ledger.recent(1))[0]
    assert (record["truncated"], record["error"]) == (True, "upstream_stream_error")


async def test_a_complete_stream_stays_complete(start_routed, primary) -> None:
    proxy = await start_routed(deployment("a", primary))
    async with sdk(proxy) as client:
        stream = await client.chat.completions.create(**CHAT, stream=True, max_tokens=3)
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices[0].finish_reason == "length"
    record = (await proxy.ledger.recent(1))[0]
    assert (record["truncated"], record["error"]) == (False, None)


async def test_a_stalled_first_token_fails_over_within_its_timeout(start_routed, primary, secondary) -> None:
    primary.faults(script=["stall"])
    proxy = await start_routed(deployment("a", primary), deployment("b", secondary), strategy="least_busy",
                               timeouts={"first_token": "200ms"})
    started = time.perf_counter()
    async with sdk(proxy) as client:
        stream = await client.chat.completions.create(**CHAT, stream=True)
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert time.perf_counter() - started >= 0.2  # waited the first token out, then failed over
    assert text == secondary.expected_text(CHAT["messages"])


async def test_a_single_deployment_that_never_starts_is_a_504_naming_the_first_token(start_routed, primary) -> None:
    primary.faults(rate=1.0, choices=("stall",))
    proxy = await start_routed(deployment("a", primary), retries=0)
    async with sdk(proxy) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(**CHAT, stream=True)
    assert caught.value.status_code == 504 and caught.value.code == "upstream_first_token_timeout"


def test_a_hung_upstream_holds_a_request_a_bounded_time_by_default() -> None:
    """Issue 10 (5): the default silence allowed mid-stream was 600 s; it is a minute now, first token too."""
    defaults = validate({}).routing.timeouts
    assert defaults.between_chunks <= 60 and defaults.first_token <= 60 and defaults.total <= 600
    assert RoutingConfig().timeouts == defaults
