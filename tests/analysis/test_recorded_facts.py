"""Traffic through a real proxy: what the ledger keeps of each request, and what-if on it to the nano-dollar."""

import time

import aiohttp

from proxy.appkeys import CONFIG
from proxy.analysis.whatif import Scenario, whatif
from proxy.config_loading import price_table
from tests.analysis.ledgers import read_rows
from tests.conftest import RunningProxy, StartProxy

CHAT = {"messages": [{"role": "user", "content": "Name three rivers."}]}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]


async def send(proxy: RunningProxy, body: dict, headers: dict | None = None) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/chat/completions", json=body, headers=headers or {}) as response:
            await response.read()
            return response


async def test_the_ledger_keeps_request_facts_but_no_text(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(policies=[{"type": "cap", "max_tokens": 30}])
    await send(proxy, {"model": "gpt-4o-mini", "max_tokens": 100, **CHAT},
               {"x-thriftgate-tags": "nightly, eu", "x-thriftgate-language": "pt-BR", "x-fake-words": "12"})
    await send(proxy, {"model": "gpt-4o", "tools": TOOLS, "tool_choice": "required", **CHAT})
    await send(proxy, {"model": "gpt-4o", "stream": True, "response_format": {"type": "json_object"}, **CHAT})
    rows = await proxy.ledger.recent(10)
    first, tools, streamed = reversed(rows)
    assert (first["tags"], first["language"], first["max_output_tokens"], first["output_words"]) == \
        ('["eu","nightly"]', "pt-br", 100, 12)  # the client's limit, not the cap's 30
    assert (first["has_tools"], first["has_images"], first["has_response_format"]) == (False, False, False)
    assert (tools["tags"], tools["has_tools"], tools["output_words"]) == (None, True, None)  # a tool call is not prose
    assert (streamed["has_response_format"], streamed["stream"], streamed["output_words"]) == (True, True, None)
    assert not any("rivers" in str(value) for row in rows for value in row.values())


async def test_a_bad_language_tag_is_a_400_naming_the_header(proxy: RunningProxy) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/chat/completions", json={"model": "gpt-4o", **CHAT},
                                headers={"x-thriftgate-language": "english please"}) as response:
            assert response.status == 400
            error = (await response.json())["error"]
    assert error["param"] == "x-thriftgate-language" and error["code"] == "invalid_language"


async def test_whatif_on_recorded_traffic_equals_the_repricing_by_hand(proxy: RunningProxy) -> None:
    counts = []
    for words, cached in ((20, 0), (35, 6), (8, 0)):
        response = await send(proxy, {"model": "gpt-4o", **CHAT},
                              {"x-fake-words": str(words), "x-fake-cached-tokens": str(cached)})
        counts.append((int(response.headers["x-thriftgate-prompt-tokens"]),
                       int(response.headers["x-thriftgate-completion-tokens"]), cached))
    await proxy.ledger.flush()
    path = proxy.app[CONFIG].ledger.path
    now = time.time()
    prices = price_table(proxy.app[CONFIG])
    report = whatif(lambda: read_rows(path, now - 600, now + 1), Scenario({"gpt-4o": "gpt-4o-mini"}), prices,
                    by="model", since=now - 600, until=now + 1)
    # gpt-4o: 2500 / 1250 / 10000 nano-dollars a prompt / cached / output token; gpt-4o-mini: 150 / 75 / 600.
    actual = sum((p - c) * 2500 + c * 1250 + o * 10000 for p, o, c in counts)
    mini = sum((p - c) * 150 + c * 75 + o * 600 for p, o, c in counts)
    assert (report["total"]["actual_nanos"], report["total"]["whatif_nanos"]) == (actual, mini)
