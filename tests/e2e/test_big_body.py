"""A big request body is parsed and counted off the event loop: small requests are not held up behind it."""

import asyncio
import json

import aiohttp
import pytest

from proxy import openai_wire
from proxy.accounting.tokens import TokenCounter, _pieces
from tests.conftest import StartProxy
from tests.e2e.raw_http import parse_response

BIG_TEXT = "The quick brown fox jumps over the lazy dog. " * 270_000  # 12 MB, 2.7M tokens
SMALL = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


async def test_small_requests_finish_while_a_big_body_is_counted(
    start_proxy: StartProxy, fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A budget and a policy both need the prompt counted; the budget then refuses the big one, so it never
    # reaches the fake upstream (which runs on this same loop).
    proxy = await start_proxy(budgets=[{"scope": "global", "tokens_per_minute": 1000}],
                              policies=[{"type": "concise", "match": {"min_prompt_tokens": 1}}])
    loop = asyncio.get_running_loop()
    big_is_parsing = asyncio.Event()
    parse = openai_wire.parse_body

    def noticed_parse(raw: bytes):
        if len(raw) > 1_000_000:
            loop.call_soon_threadsafe(big_is_parsing.set)  # from a thread, or from the loop itself
        return parse(raw)

    monkeypatch.setattr(openai_wire, "parse_body", noticed_parse)
    finished: list[str] = []

    async def big() -> int:
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": BIG_TEXT}]}).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            answer = parse_response(await reader.read())
        finally:
            writer.close()
            await writer.wait_closed()
        finished.append("big")
        return answer.status

    async def small() -> list[int]:
        await big_is_parsing.wait()
        statuses = []
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.post(proxy.base_url + "/chat/completions", json=SMALL) as response:
                    await response.read()
                    statuses.append(response.status)
                finished.append("small")
        return statuses

    big_status, small_statuses = await asyncio.gather(big(), small())
    assert (big_status, small_statuses) == (429, [200, 200, 200])  # the big one was counted: 2.7M tokens > 1000
    # On 0d52d64 the loop parsed and counted the big body in one go: "big" finished first.
    assert finished == ["small", "small", "small", "big"]


def test_long_texts_are_counted_in_pieces_with_the_same_count() -> None:
    counter = TokenCounter()
    text = ("Ünïcode words, 123 numbers, don't stop;  two  spaces\nnew lines 日本語のテキスト 😀 " * 20_000)
    assert len(list(_pieces(text))) > 10 and "".join(_pieces(text)) == text
    for model in ("gpt-4o", "gpt-4"):
        tokenizer = counter.for_model(model)
        assert tokenizer.text(text) == len(tokenizer.encoding.encode_ordinary(text))
    assert list(_pieces("x" * 500_000)) == ["x" * 500_000]  # no space between letters: no cut
