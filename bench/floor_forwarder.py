"""The floor: a bare aiohttp pass-through, i.e. what one extra aiohttp hop costs on this machine.

    python -m bench.floor_forwarder --port P --upstream http://127.0.0.1:U

Forwards method, path, headers and body with one shared ClientSession; relays status, headers and body,
streaming chunk by chunk when the upstream answers with server-sent events. No parsing, no accounting.
"""

import argparse

import aiohttp
import uvloop
from aiohttp import web

# Not relayed either way: they describe one hop, or a body aiohttp re-frames (and decompresses).
HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "host", "content-length", "content-encoding"})
SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


def relayed(headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP}


async def forward(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    url = request.app[UPSTREAM] + request.rel_url.path_qs
    body = await request.read()
    async with session.request(request.method, url, data=body, headers=relayed(request.headers)) as upstream:
        if upstream.content_type != "text/event-stream":
            return web.Response(status=upstream.status, body=await upstream.read(), headers=relayed(upstream.headers))
        response = web.StreamResponse(status=upstream.status, headers=relayed(upstream.headers))
        await response.prepare(request)
        async for data in upstream.content.iter_any():
            await response.write(data)
        await response.write_eof()
        return response


async def session_ctx(app: web.Application):
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    yield
    await app[SESSION].close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_forwarder")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, without /v1")
    args = parser.parse_args()
    app = web.Application()
    app[UPSTREAM] = args.upstream.rstrip("/")
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
