"""Client input echoed into response headers: control characters are a 400, anything else is encoded, and a
kept-alive connection stays in step."""

import aiohttp
import pytest

from tests.conftest import RunningProxy, both_upstreams

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("model", ["gpt-4o-mini\r\nX-Injected: 1", "gpt-4o-mini\n", "gpt\x00", "gpt\x7f", "gpt\x85",
                                   "gpt\u2028", "g" * 257])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_model_with_control_characters_is_a_400_and_the_connection_stays_in_step(
    proxy: RunningProxy, model: str, stream: bool
) -> None:
    connector = aiohttp.TCPConnector(limit=1)  # one connection, kept alive: the second request reuses it
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(proxy.base_url + "/chat/completions",
                                json={"model": model, "messages": MESSAGES, "stream": stream}) as response:
            assert response.status == 400  # on 0d52d64: a reply cut after its headers failed to serialise
            error = (await response.json())["error"]
            assert (error["param"], error["code"]) == ("model", "invalid_model")
        async with session.post(proxy.base_url + "/chat/completions",
                                json={"model": "gpt-4o-mini", "messages": MESSAGES}) as response:
            assert response.status == 200
            assert (await response.json())["object"] == "chat.completion"
    rows = await proxy.ledger.recent(2)
    assert sorted(row["status"] for row in rows) == [200, 400]


async def test_a_model_name_beyond_ascii_is_echoed_percent_encoded(proxy: RunningProxy, fake) -> None:
    fake_model = "fake-ünïcode"  # the fake serves any fake-* model
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/chat/completions",
                                json={"model": fake_model, "messages": MESSAGES}) as response:
            assert response.status == 200
            raw = dict(response.raw_headers)[b"x-thriftgate-model"]
    assert raw == b"fake-%C3%BCn%C3%AFcode"


async def test_an_anthropic_client_gets_the_same_400(start_proxy, fake, claude) -> None:
    proxy = await start_proxy(upstreams=both_upstreams(fake, claude))
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/messages", json={
                "model": "claude-sonnet-4-5\r\nX-Injected: 1", "max_tokens": 5, "messages": MESSAGES},
                headers={"anthropic-version": "2023-06-01"}) as response:
            assert response.status == 400
            body = await response.json()
    assert body["type"] == "error" and body["error"]["message"].startswith("model: ")  # Anthropic's shape
    assert claude.requests == []
