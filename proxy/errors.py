"""Errors the proxy itself raises, rendered in OpenAI's error shape by one function (`response`); the
client's dialect renders them in its own shape (proxy/dialects: Anthropic's for its clients).

Upstream errors are relayed to the client as they came (translated into the client's dialect when the
upstream speaks another one); one that came as plain text (an HTML error page, a bare 404 from an upstream
without that endpoint) is put in the client's error shape by `upstream_text_error`, naming the upstream,
with its status kept.
"""

from collections.abc import Mapping

import orjson
from aiohttp import web


class ProxyError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None
    close_connection = False  # True: the request's framing is lost, the connection cannot be reused

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        )

    def response(self) -> web.Response:
        return web.Response(
            status=self.status, body=self.body(), content_type="application/json", headers=self.headers
        )


def upstream_text_error(upstream: str, status: int, body: bytes) -> "ProxyError | None":
    """None for an upstream error in JSON (relayed as it came); for a plain-text one, the error to render in
    the client's shape instead, naming the upstream, its status kept."""
    try:
        if isinstance(orjson.loads(body), dict):
            return None
    except orjson.JSONDecodeError:
        pass
    text = " ".join(body.decode("utf-8", "replace").split())[:_QUOTED_TEXT]
    said = f": {text}" if text else " with an empty body"
    error = ProxyError(f"The upstream '{upstream}' answered {status}{said}", code=f"upstream_{status}")
    error.status, error.type = status, "upstream_error"
    return error


_QUOTED_TEXT = 300


class BadRequest(ProxyError):
    status = 400
    type = "invalid_request_error"


class UnreadableBody(BadRequest):
    code = "unreadable_body"
    close_connection = True


class Unauthorized(ProxyError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(ProxyError):
    status = 403
    type = "permission_denied"


class NotFound(ProxyError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class PayloadTooLarge(ProxyError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(ProxyError):
    status = 429
    type = "rate_limit_exceeded"


class UpstreamUnavailable(ProxyError):
    status = 502
    type = "upstream_error"
    code = "upstream_unreachable"


class UpstreamKeyMissing(ProxyError):
    """The upstream's key comes from the proxy's environment, and it is not set."""

    status = 502
    type = "upstream_error"
    code = "upstream_key_missing"


class ServiceUnavailable(ProxyError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class UpstreamTimeout(ProxyError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


class LoopDetected(ProxyError):
    status = 508
    type = "server_error"
    code = "loop_detected"
