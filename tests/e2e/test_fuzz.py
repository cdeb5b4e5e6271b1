"""A bounded, seeded fuzz run: malformed requests over every endpoint, header and body field the proxy reads,
through a proxy with keys, budgets and every kind of policy on. None may get a 500: a client's mistake is a
4xx in OpenAI's error shape (on 0d52d64, 56 of 8,028 such requests got a 500)."""

import asyncio
import json
from collections import Counter

import aiohttp
from yarl import URL

from proxy.control.keys import key_hash
from tests.conftest import RunningProxy, StartProxy, both_upstreams
from tests.e2e.fuzz_requests import KEY, FuzzRequest, requests

SEED = 10
COUNT = 2000
CONCURRENCY = 8
# aiohttp's HTTP parser refuses a body it cannot decode (br or zstd without their libraries; a deflate or gzip body
# that fails as it arrives with its headers) with a plain-text 400 before any handler of ours runs: the one error
# not in OpenAI's shape, and still a 400 naming the encoding.


def fuzz_config(fake, claude) -> dict:
    return {
        "upstreams": both_upstreams(fake, claude),
        "auth": {"keys": [{"id": "fuzz", "team": "fuzzers", "sha256": key_hash(KEY)}]},
        "budgets": [{"scope": "global", "usd": 1000, "window": "day"},
                    {"scope": "global", "tokens_per_minute": 10**9, "requests_per_minute": 10**6},
                    {"scope": "team:fuzzers", "usd": 100, "window": "month"}],
        "embedders": {"small": {"type": "upstream", "upstream": "fake", "model": "text-embedding-3-small"}},
        "policies": [
            {"type": "route", "to": "gpt-4o-mini", "match": {"models": ["gpt-4o"], "last_message_regex": "(?i)rivers",
                                                              "max_prompt_tokens": 4000}},
            {"type": "exact_cache"},
            {"type": "semantic_cache", "embedder": "small", "threshold": 0.99},
            {"type": "cascade", "try": "gpt-4o-mini", "match": {"tags": ["cheap"]}},
            {"type": "concise", "match": {"min_prompt_tokens": 1}, "holdout": 0.1},
            {"type": "cap", "max_tokens": 64, "n": 2},
        ],
    }


async def send(session: aiohttp.ClientSession, proxy: RunningProxy, request: FuzzRequest) -> tuple[int, bytes, bool]:
    """The answer, and whether aiohttp's HTTP parser gave it; status 0 when the server closed the connection
    before it (aiohttp's HTTP parser does, after its own 400, when it cannot read a request's framing or
    encoding)."""
    url = URL(proxy.url + request.target, encoded=True)
    try:
        async with session.request(request.method, url, data=request.body, headers=request.headers,
                                   skip_auto_headers=("Content-Type",), auto_decompress=False) as response:
            parser_refusal = response.content_type == "text/plain" and "x-thriftgate-request-id" not in response.headers
            return response.status, await response.read(), parser_refusal
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
        return 0, b"", False


def is_error_shaped(body: bytes) -> bool:
    """OpenAI's error shape, or Anthropic's ({"type": "error", "error": {"type", "message"}}) for its clients."""
    try:
        document = json.loads(body)
        error = document["error"]
    except (ValueError, KeyError, TypeError):
        return False
    if not isinstance(error, dict):
        return False
    return {"message", "type", "param", "code"} <= set(error) or (
        document.get("type") == "error" and {"type", "message"} <= set(error))


async def test_no_malformed_request_gets_a_500(start_proxy: StartProxy, fake, claude) -> None:
    proxy = await start_proxy(**fuzz_config(fake, claude))
    slots = asyncio.Semaphore(CONCURRENCY)
    statuses: Counter[int] = Counter()
    server_errors, unshaped = [], []

    async def one(session: aiohttp.ClientSession, request: FuzzRequest) -> None:
        async with slots:
            status, body, parser_refusal = await send(session, proxy, request)
        statuses[status] += 1
        if status == 500 or (status > 500 and not is_error_shaped(body)):  # 502-508 are deliberate answers
            server_errors.append(f"{status} {request.what}: {body[:200]!r}")
        elif (status >= 400 and request.target.startswith("/v1") and not is_error_shaped(body)
              and not (parser_refusal and status == 400 and "Content-Encoding" in request.headers)):
            unshaped.append(f"{status} {request.what}: {body[:120]!r}")

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, request) for request in requests(SEED, COUNT)))
    rows = await proxy.ledger.recent(COUNT * 2)
    failed_inside = [row for row in rows if row["error"] in ("internal_error", "policy_failed")]
    summary = ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items()))
    shown = "\n".join(server_errors[:30])
    assert not server_errors, f"{len(server_errors)} of {COUNT} got a 5xx ({summary}):\n{shown}"
    assert not failed_inside
    assert not unshaped, f"{len(unshaped)} errors not in OpenAI's shape:\n" + "\n".join(unshaped[:30])
    assert statuses[200] > COUNT // 10  # the valid share was served: the fuzz reached the upstream
