"""An upstream error that came as plain text reaches the client in OpenAI's error shape, naming the upstream,
with its status kept; JSON errors are relayed as they came."""

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.conftest import StartProxy

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def plain_upstream():
    """An OpenAI-compatible server without /v1/responses, answering as many do: a plain-text 404."""

    async def text_error(request: web.Request) -> web.Response:
        status = int(request.headers.get("x-status", "404"))
        return web.Response(status=status, text="404 page not found\n" if status == 404 else "<html>Bad Gateway</html>",
                            content_type="text/plain" if status == 404 else "text/html")

    async def json_error(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "nope", "type": "invalid_request_error", "param": None,
                                            "code": "x"}}, status=400)

    app = web.Application()
    app.router.add_post("/v1/responses", text_error)
    app.router.add_post("/v1/chat/completions", json_error)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    await runner.cleanup()


async def test_a_plain_text_upstream_error_is_wrapped_naming_the_upstream(start_proxy: StartProxy,
                                                                         plain_upstream: str) -> None:
    proxy = await start_proxy(upstreams=[{"name": "vllm", "base_url": plain_upstream, "api_key_env": None}])
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0) as sdk:
        with pytest.raises(openai.NotFoundError) as caught:
            await sdk.responses.create(model="gpt-4o-mini", input="hi")
    assert caught.value.status_code == 404  # on 0d52d64: 404 with the plain text, which the SDK cannot parse
    assert caught.value.body["type"] == "upstream_error" and caught.value.body["code"] == "upstream_404"
    assert caught.value.body["message"] == "The upstream 'vllm' answered 404: 404 page not found"
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/responses", json={"model": "gpt-4o-mini", "input": "hi"},
                                headers={"x-status": "502"}) as response:
            assert (response.status, response.content_type) == (502, "application/json")
            assert "'vllm' answered 502: <html>Bad Gateway</html>" in (await response.json())["error"]["message"]
        async with session.post(proxy.base_url + "/chat/completions", json=CHAT) as response:
            assert response.status == 400 and (await response.json())["error"]["message"] == "nope"  # as it came
