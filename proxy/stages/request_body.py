"""The request's body: read within the limit, decoded as its Content-Encoding says, never one this proxy sent;
a big one is parsed on a thread, so the event loop keeps serving small requests meanwhile."""

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from proxy.errors import LoopDetected, PayloadTooLarge, UnreadableBody
from proxy.stages.upstream import HOP_HEADER

OFF_LOOP_BYTES = 256 * 1024  # larger bodies are parsed and counted on a thread


async def read(request: web.Request, limit: int) -> bytes:
    if HOP_HEADER in request.headers:
        raise LoopDetected("This request already passed through thriftgate: an upstream points back at the proxy.")
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    except RequestPayloadError:  # a body that is not what its Content-Encoding says
        request.content.feed_eof()  # the rest is unreadable too: aiohttp must not try to drain it
        encoding = request.headers.get("Content-Encoding", "")
        raise UnreadableBody(f"The request body could not be decoded as its Content-Encoding ({encoding!r}) says.",
                             param="Content-Encoding") from None


def is_big(raw: bytes) -> bool:
    return len(raw) > OFF_LOOP_BYTES


async def parse(dialect: Any, raw: bytes) -> dict[str, Any]:
    return await asyncio.to_thread(dialect.parse, raw) if is_big(raw) else dialect.parse(raw)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
