"""One client's upstream cookies never reach the upstream on another client's request: the proxy shares one HTTP
session among every client, and an upstream behind a login proxy (a session cookie set once a request has passed
its check) would otherwise take every later client, key or none, for the first one."""

import json

from aiohttp import web

from tests.conftest import StartProxy
from tests.e2e.chat_upstream import chat_answer, chat_upstream
from tests.e2e.raw_http import raw_request

JSON = {"Content-Type": "application/json"}


def cookie_setting_upstream(cookies_seen: list[str | None]) -> web.Application:
    """A chat upstream that sets a session cookie on every answer and notes the Cookie header of each request."""

    async def completion(request: web.Request) -> web.Response:
        cookies_seen.append(request.headers.get("Cookie"))
        response = chat_answer({"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9})
        response.set_cookie("session", f"client-{len(cookies_seen)}", path="/")
        return response

    return chat_upstream(completion)


async def test_a_cookie_the_upstream_set_for_one_request_is_not_sent_with_the_next(
    start_proxy: StartProxy, aiohttp_server
) -> None:
    seen: list[str | None] = []
    upstream = await aiohttp_server(cookie_setting_upstream(seen))
    # By name, not 127.0.0.1: a cookie jar keeps no cookies for an IP address unless told to.
    base_url = f"http://localhost:{upstream.port}/v1"
    proxy = await start_proxy(upstreams=[{"name": "cookies", "base_url": base_url, "api_key_env": None}])
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    for _ in range(3):
        answer = await raw_request(proxy.port, "POST", "/v1/chat/completions", body=body, headers=JSON)
        assert answer.status == 200
    assert seen == [None, None, None]
