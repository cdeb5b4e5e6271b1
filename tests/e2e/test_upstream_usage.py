"""What an upstream reports is bounded before it is priced, settled and recorded: a broken one (or one that is
not what it claims) reporting usage past 64 bits costs a lot, and leaves the ledger and the budgets working."""

import json

from aiohttp import web

from proxy.openai_usage import MAX_REPORTED_TOKENS
from tests.conftest import StartProxy
from tests.e2e.chat_upstream import chat_answer, chat_upstream
from tests.e2e.raw_http import raw_request

JSON = {"Content-Type": "application/json"}
ABSURD = 2**64 - 1  # the largest integer a JSON parser (orjson) reads


def absurd_usage_upstream() -> web.Application:
    """Answers every chat completion in OpenAI's shape, with usage no request could have used."""

    async def completion(request: web.Request) -> web.Response:
        return chat_answer({"prompt_tokens": ABSURD, "completion_tokens": ABSURD, "total_tokens": ABSURD,
                            "prompt_tokens_details": {"cached_tokens": ABSURD}})

    return chat_upstream(completion)


async def test_usage_past_any_request_is_counted_at_the_bound_and_the_ledger_keeps_writing(
    start_proxy: StartProxy, aiohttp_server
) -> None:
    upstream = await aiohttp_server(absurd_usage_upstream())
    proxy = await start_proxy(
        upstreams=[{"name": "absurd", "base_url": str(upstream.make_url("/v1")), "api_key_env": None}],
        budgets=[{"scope": "global", "usd": 1000, "window": "day"}],
    )
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 5}).encode()
    answers = [await raw_request(proxy.port, "POST", "/v1/chat/completions", body=body, headers=JSON)
               for _ in range(2)]
    assert answers[0].status == 200
    assert answers[0].headers["x-thriftgate-prompt-tokens"] == str(MAX_REPORTED_TOKENS)
    assert answers[1].status == 429  # the first one spent the whole budget, as far as anyone can tell
    await proxy.ledger.flush()
    rows = [await proxy.ledger.get(answer.headers["x-thriftgate-request-id"]) for answer in answers]
    assert [row["status"] for row in rows] == [200, 429]  # both written: no batch failed on the first
    assert rows[0]["prompt_tokens"] == MAX_REPORTED_TOKENS and rows[0]["completion_tokens"] == MAX_REPORTED_TOKENS
    assert 0 < rows[0]["cost_nanos"] < 2**63
