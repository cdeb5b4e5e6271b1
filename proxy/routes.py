"""What the routes outside the pipeline wrap themselves in, route by route: aiohttp runs an app's middlewares on
every request (two frames per middleware on each of its steps), so the priced routes, which shape their own
errors, take none.

- GuardedRouter: where the admin modules add their routes, each handler behind a wrapper (the master-key guard).
- shaped_errors: a handler's ProxyError (and an unreadable body) in the client's error shape (OpenAI's, or
  Anthropic's for its clients), as the pipeline answers its own.
- unrouted: the last route, for what no other serves: 405 where the path has routes for other methods (with
  Allow), else 404, in the same shape.
"""

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from proxy.dialects.ingress import for_request
from proxy.errors import NotFound, ProxyError, UnreadableBody

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Wrap = Callable[[str, str, Handler], Handler]  # (path, method, handler) -> the handler the route gets


class GuardedRouter:
    """The app's router, each handler added through `wrap(path, method, handler)`."""

    def __init__(self, router: web.UrlDispatcher, wrap: Wrap) -> None:
        self._router, self._wrap = router, wrap

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        self._router.add_route(method, path, self._wrap(path, method, handler))

    def add_get(self, path: str, handler: Handler) -> None:
        self._router.add_get(path, self._wrap(path, "GET", handler))  # and HEAD, a read too

    def add_post(self, path: str, handler: Handler) -> None:
        self.add_route("POST", path, handler)

    def add_delete(self, path: str, handler: Handler) -> None:
        self.add_route("DELETE", path, handler)

    def add_routes(self, routes: list[web.RouteDef]) -> None:
        for route in routes:
            self.add_route(route.method, route.path, route.handler)


def shaped_errors(handler: Handler) -> Handler:
    async def shaped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ProxyError as err:
            return _in_dialect(request, err)
        except RequestPayloadError:  # an admin body that is not what its Content-Encoding says
            request.content.feed_eof()  # the rest is unreadable too: aiohttp must not try to drain it
            return _in_dialect(request, UnreadableBody("The request body could not be decoded as its "
                                                       "Content-Encoding says."))

    return shaped


async def unrouted(request: web.Request) -> web.Response:
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        match, methods = await resource.resolve(request)
        if match is None:  # the path is another route's, for other methods (or not at all: no methods)
            allowed |= methods
    if not allowed:
        return _in_dialect(request, NotFound(f"Unknown route: {request.method} {request.path}"))
    err = ProxyError(f"Method {request.method} is not allowed on {request.path}.", code="method_not_allowed")
    err.status, err.type, err.headers = 405, "invalid_request_error", {"Allow": ",".join(sorted(allowed))}
    return _in_dialect(request, err)


def _in_dialect(request: web.Request, err: ProxyError) -> web.Response:
    response = for_request(request.path, request.headers).error_response(err)
    if err.close_connection:
        response.force_close()
    return response
