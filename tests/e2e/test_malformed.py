"""Malformed requests the issue named: each a 400 naming the problem, whatever is switched on, never a 500."""

import json

import pytest

from tests.conftest import StartProxy, both_upstreams
from tests.e2e.raw_http import raw_request

JSON = {"Content-Type": "application/json"}
HI = [{"role": "user", "content": "hi"}]
# What makes every stage read the body: a budget counts it, a policy matches on its size, a cache hashes it.
EVERYTHING_ON = {
    "budgets": [{"scope": "global", "tokens_per_minute": 10**9}],
    "policies": [{"type": "exact_cache"}, {"type": "concise", "match": {"min_prompt_tokens": 1}}],
}


def deep(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("config", [{}, EVERYTHING_ON], ids=["plain", "everything-on"])
@pytest.mark.parametrize("body,param", [
    ({"model": "gpt-4o-mini", "messages": [None]}, "messages[0]"),
    ({"model": "gpt-4o-mini", "messages": HI + [[{"role": "user"}]]}, "messages[1]"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [None]}]}, "messages[0].content[0]"),
    ({"model": "gpt-4o-mini", "messages": {"role": "user"}}, "messages"),
    ({"model": "gpt-4o-mini", "messages": HI, "tools": 1.5}, "tools"),
    ({"model": "claude-sonnet-4-5", "messages": HI, "tools": [None]}, "tools[0]"),  # translated to Anthropic
    ({"model": "gpt-4o-mini", "input": [None]}, "input[0]"),
    ({"model": "text-embedding-3-small", "input": [1.5]}, "input[0]"),
    ({"model": "text-embedding-3-small", "input": {"text": "x"}}, "input"),
])
async def test_a_malformed_structure_is_a_400_naming_it(start_proxy: StartProxy, fake, claude, config: dict,
                                                        body: dict, param: str) -> None:
    proxy = await start_proxy(upstreams=both_upstreams(fake, claude), **config)
    path = "/v1/embeddings" if body["model"].startswith("text-") else (
        "/v1/responses" if "input" in body else "/v1/chat/completions")
    answer = await raw_request(proxy.port, "POST", path, body=json.dumps(body).encode(), headers=JSON)
    assert answer.status == 400, answer.body  # on 0d52d64: 500 with budgets or lookups on for several of them
    assert answer.json()["error"]["param"] == param
    assert fake.requests == [] and claude.requests == []


@pytest.mark.parametrize("config", [{}, EVERYTHING_ON], ids=["plain", "everything-on"])
@pytest.mark.parametrize("stream", [False, True])
async def test_json_nested_too_deep_is_a_400(start_proxy: StartProxy, fake, config: dict, stream: bool) -> None:
    proxy = await start_proxy(**config)
    body = {"model": "gpt-4o-mini", "messages": HI, "stream": stream, "metadata": {"x": deep(300)}}
    answer = await raw_request(proxy.port, "POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                               headers=JSON)
    assert answer.status == 400  # on 0d52d64: 500 when the body was re-encoded (a stream, a policy's edit)
    assert answer.json()["error"]["code"] == "too_deeply_nested" and "254" in answer.json()["error"]["message"]
    deeper = b'{"model": "gpt-4o-mini", "x": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    answer = await raw_request(proxy.port, "POST", "/v1/chat/completions", body=deeper, headers=JSON)
    assert answer.status == 400 and "depth" in answer.json()["error"]["message"]
    fine = {"model": "gpt-4o-mini", "messages": HI, "stream": stream, "metadata": {"x": deep(200)}}
    answer = await raw_request(proxy.port, "POST", "/v1/chat/completions", body=json.dumps(fine).encode(),
                               headers=JSON)
    assert answer.status == 200


async def test_a_body_that_is_not_what_its_content_encoding_says_is_a_400(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(**EVERYTHING_ON)
    body = json.dumps({"model": "gpt-4o-mini", "messages": HI}).encode()
    # Large enough that aiohttp hands the handler a body still arriving, as a real upload would be.
    body = body[:-1] + b', "pad": "' + b"x" * 300_000 + b'"}'
    answer = await raw_request(proxy.port, "POST", "/v1/chat/completions", body=body,
                               headers={**JSON, "Content-Encoding": "gzip"})
    assert answer.status == 400  # on 0d52d64: 500
    error = answer.json()["error"]
    assert (error["param"], error["code"]) == ("Content-Encoding", "unreadable_body") and "gzip" in error["message"]
    assert answer.headers["Connection"] == "close"  # the rest of the body cannot be framed: the connection goes
    assert fake.requests == []
    rows = await proxy.ledger.recent(5)
    assert [(row["status"], row["error"]) for row in rows] == [(400, "unreadable_body")]


async def test_an_honest_gzip_body_is_read_and_forwarded_decoded(start_proxy: StartProxy, fake) -> None:
    import gzip

    proxy = await start_proxy()
    body = gzip.compress(json.dumps({"model": "gpt-4o-mini", "messages": HI}).encode())
    answer = await raw_request(proxy.port, "POST", "/v1/chat/completions", body=body,
                               headers={**JSON, "Content-Encoding": "gzip"})
    assert answer.status == 200
    assert "Content-Encoding" not in fake.requests[-1].headers  # on 0d52d64: forwarded over a decoded body
    assert fake.requests[-1].body["messages"] == HI
