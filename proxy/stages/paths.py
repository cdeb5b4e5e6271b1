"""Which endpoint a request path is: routing decides on the decoded, normalised path, never the raw one.

An upstream decodes `%2F` and resolves `..` itself, so a path the proxy took for "some other path"
could reach a priced endpoint (or any path of the upstream's host) with the proxy's key attached.
Here the path is decoded once and its dot and empty segments resolved; a path that normalises to a
priced endpoint is that endpoint, one that leaves `/v1/` (or carries what no OpenAI path has:
control characters, a backslash, a `%` left after decoding, an encoded `?` or `#`) is refused with a
400. A paid endpoint the proxy does not price (`server_config.PAID_UNPRICED_PATHS`) is refused with a
403 unless the operator opted in (`server.unpriced_paid_paths`): what is spent through it no usd or token
budget would count. Any other path is passed through only when the allow-list (`server.passthrough_paths`)
names it, for that method. What goes upstream is the normalised path, re-encoded, and the client's query
as it came.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from proxy.errors import BadRequest, Forbidden, NotFound
from proxy.server_config import PAID_UNPRICED, PathGlobs

PREFIX = "/v1"
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\%?#]")
_SAFE = "/:@!$&'()*+,;=-._~"  # what a path segment may hold unencoded (RFC 3986 pchar)


@dataclass(frozen=True, slots=True)
class Route:
    dialect: Any  # a priced endpoint's (dialects/ingress.py), or None: passed through
    path: str  # normalised, decoded
    upstream_path: str  # what follows the upstream's base URL (which ends in /v1): path, then ?query


def normalise(raw_path: str) -> str:
    """The path an upstream would serve for `raw_path` (still percent-encoded), or BadRequest."""
    try:
        decoded = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The request path is not valid UTF-8 once decoded.", code="invalid_path") from None
    if bad := _FORBIDDEN.search(decoded):
        raise BadRequest(f"The request path holds {bad.group()!r} once decoded, which no API path has.",
                         code="invalid_path")
    segments: list[str] = []
    for segment in decoded.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise _leaves()
            segments.pop()
        else:
            segments.append(segment)
    path = "/" + "/".join(segments)
    if not path.startswith(PREFIX + "/"):
        raise _leaves()
    return path


def _leaves() -> BadRequest:
    return BadRequest(f"The request path leaves {PREFIX}/ once decoded; only {PREFIX}/ paths are served.",
                      code="invalid_path")


class PathRouter:
    """Built once from the priced paths (path -> the dialect spoken there), the pass-through allow-list and the
    paid endpoints the operator lets through unpriced (entries as server_config.py reads them)."""

    def __init__(self, priced: Mapping[str, Any], passthrough: Iterable[str], unpriced_paid: Iterable[str] = ()) -> None:
        self._priced = dict(priced)
        # A priced route without a query string (nearly every request) goes upstream as it came: made once.
        self._unqueried = {path: Route(dialect, path, upstream_path_for(path, "")) for path, dialect in priced.items()}
        self._allowed = PathGlobs(passthrough)
        self._paid_allowed = PathGlobs(unpriced_paid)

    def priced(self, endpoint_path: str, raw_query: str) -> Route:
        """A request that matched a priced route exactly: its canonical path goes upstream."""
        if not raw_query:
            return self._unqueried[endpoint_path]
        return Route(self._priced[endpoint_path], endpoint_path, upstream_path_for(endpoint_path, raw_query))

    def resolve(self, method: str, raw_path: str, raw_query: str) -> Route:
        path = normalise(raw_path)
        dialect = self._priced.get(path)
        if dialect is not None and method == "POST":
            return Route(dialect, path, upstream_path_for(path, raw_query))
        if PAID_UNPRICED.match(method, path):
            if not self._paid_allowed.match(method, path):
                raise Forbidden(f"{method} {path} is a paid endpoint that this proxy does not price, so it is not passed "
                                "through: what it spends no budget would count. The operator can allow it in "
                                "server.unpriced_paid_paths (counted against request budgets only).",
                                code="unpriced_endpoint")
        elif not self._allowed.match(method, path):
            raise NotFound(f"Unknown route: {method} {path} (this proxy passes through only the API paths and "
                           "methods listed in server.passthrough_paths).")
        return Route(None, path, upstream_path_for(path, raw_query))


def upstream_path_for(path: str, raw_query: str) -> str:
    """What follows the upstream's base URL (which ends in /v1) for a normalised path: the path re-encoded, then
    the client's query as it came."""
    tail = quote(path[len(PREFIX):], safe=_SAFE)
    return f"{tail}?{raw_query}" if raw_query else tail
