"""An upstream of a test's own: one chat completions route, answering in OpenAI's shape with the usage the test
wants reported (a broken upstream's, one that sets cookies...)."""

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web


def chat_answer(usage: dict[str, Any]) -> web.Response:
    """A whole chat completion saying "hi", reporting `usage`."""
    answer = {"id": "chatcmpl-test", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
              "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
              "usage": usage}
    return web.Response(body=json.dumps(answer), content_type="application/json")


def chat_upstream(completion: Callable[[web.Request], Awaitable[web.Response]]) -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", completion)
    return app
