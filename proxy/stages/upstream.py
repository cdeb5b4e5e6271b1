"""The only owner of the aiohttp ClientSession: talks to the upstream a request was given.

aiohttp's exceptions are translated here, at one boundary, into the proxy's 502/504 errors, both
when the request is sent and while its answer is read. Which deployment a request goes to, and what
happens when it fails, is proxy/routing/'s business.
"""

import asyncio
from collections.abc import AsyncIterator, Mapping

import aiohttp
from multidict import CIMultiDict

from proxy.upstream_config import UpstreamConfig, UpstreamMatcher
from proxy.dialects.providers import PROVIDERS
from proxy.errors import UpstreamKeyMissing, UpstreamTimeout, UpstreamUnavailable
from proxy.routing.config import Timeouts
from proxy.upstream_types import Upstream

# Marks requests this proxy sent, so a misconfigured upstream pointing back at us fails fast.
HOP_HEADER = "x-thriftgate-hop"

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "content-length"}
)
# The proxy decompresses (it must read usage), so length and encoding no longer hold downstream.
_NOT_RELAYED_BACK = _HOP_BY_HOP | {"content-encoding", "set-cookie", "date", "server"}
# The body goes decoded (aiohttp decoded it), so its content-encoding stays here too.
_NOT_FORWARDED = _HOP_BY_HOP | {"accept-encoding", "authorization", "x-api-key", "content-encoding"}


def upstream_from_config(config: UpstreamConfig, timeouts: Timeouts) -> Upstream:
    return Upstream(
        name=config.name,
        base_url=config.base_url,
        api_key=config.api_key,
        key_env=config.api_key_env,
        timeout=aiohttp.ClientTimeout(
            total=timeouts.total, connect=config.connect_timeout_seconds or timeouts.connect,
            sock_read=config.read_timeout_seconds,
        ),
        provider=PROVIDERS[config.provider](config),
        model=config.model,
        weight=config.weight,
        rpm=config.rpm,
        tpm=config.tpm,
    )


class UpstreamClient:
    def __init__(self, upstreams: tuple[UpstreamConfig, ...], timeouts: Timeouts) -> None:
        self.configure(upstreams, timeouts)
        self._session: aiohttp.ClientSession | None = None

    def configure(self, upstreams: tuple[UpstreamConfig, ...], timeouts: Timeouts) -> None:
        """The upstreams as configured (again, on reload); requests in flight keep the ones they were given."""
        self.by_name = {u.name: upstream_from_config(u, timeouts) for u in upstreams}
        self.default = self.by_name[upstreams[0].name]
        self._matcher = UpstreamMatcher(upstreams)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
        # No cookie jar: one session serves every client, so a cookie an upstream set for one client's request
        # (a login proxy's session, say) would go out with every other client's.
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                              cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def named(self, name: str) -> Upstream | None:
        return self.by_name.get(name)

    def route(self, model: str) -> Upstream | None:
        """The model's first deployment, for calls beside requests that pick no other (a lookup's verifier);
        requests go through proxy/routing/, which chooses among every deployment that is up."""
        config = self._matcher.for_model(model)
        return self.by_name[config.name] if config else None

    def default_for(self, wire: str) -> Upstream:
        """Where an unpriced path goes: the first upstream that speaks the client's dialect, else the first."""
        return next((u for u in self.by_name.values() if u.provider.wire == wire), self.default)

    def open(
        self, upstream: Upstream, method: str, path: str, body: bytes | None, client_headers: Mapping[str, str]
    ) -> "Sent":
        """`async with open(...) as response:` sends the request and yields the response with its body unread."""
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        headers = forward_headers(client_headers, upstream)
        carries_key = headers.get("Authorization") or headers.get("x-api-key")  # the client's own, passed on
        if upstream.api_key is None and upstream.key_env and not carries_key:
            raise UpstreamKeyMissing(
                f"The upstream '{upstream.name}' needs an API key: ${upstream.key_env} (its api_key_env) is not set "
                "in the proxy's environment, and the request carries no key of its own.")
        url = upstream.base_url + path
        return Sent(upstream, self._session.request(
            method, url, data=body, headers=headers, timeout=upstream.timeout, allow_redirects=False))


class Sent:
    """A request on its way: its response while the `async with` lasts, released after. aiohttp's errors raised
    sending it, releasing it or inside the block (reading the answer) come out translated (translate_errors).
    A class rather than @asynccontextmanager: a generator-based one costs several times as much per request."""

    __slots__ = ("_upstream", "_request")

    def __init__(self, upstream: Upstream, request) -> None:
        self._upstream, self._request = upstream, request

    async def __aenter__(self) -> aiohttp.ClientResponse:
        with translate_errors(self._upstream):
            return await self._request.__aenter__()

    async def __aexit__(self, kind, exc, traceback) -> bool:
        errors = translate_errors(self._upstream)
        with errors:
            await self._request.__aexit__(kind, exc, traceback)
        return errors.__exit__(kind, exc, traceback)


async def read_body(upstream: Upstream, response: aiohttp.ClientResponse) -> bytes:
    with translate_errors(upstream):
        return await response.read()


async def read_first(upstream: Upstream, response: aiohttp.ClientResponse) -> bytes:
    """The first bytes of a streamed answer, as soon as any arrive (b"" when it ends at once)."""
    with translate_errors(upstream):
        return await response.content.readany()


def keep_reading_within(upstream: Upstream, response: aiohttp.ClientResponse, seconds: float) -> None:
    """From now on, a silence of `seconds` between two reads of this answer fails it (unless the upstream
    sets its own read timeout). aiohttp checks it at every read it already times."""
    if upstream.timeout.sock_read is not None or response.connection is None:
        return
    protocol = response.connection.protocol
    if protocol is not None:
        protocol.read_timeout = seconds
        protocol.start_timeout()


async def iter_body(upstream: Upstream, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    with translate_errors(upstream):
        async for data in response.content.iter_any():
            yield data


class translate_errors:  # lower case: read as a function, `with translate_errors(upstream):`
    """aiohttp's timeouts and client errors, raised inside the block, as UpstreamTimeout and UpstreamUnavailable.
    A class rather than @contextmanager: entered two or three times per request, a generator costs 4x."""

    __slots__ = ("_upstream",)

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, traceback) -> bool:
        if kind is None:
            return False
        if issubclass(kind, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            raise UpstreamTimeout(f"The upstream '{self._upstream.name}' did not answer in time.") from None
        if issubclass(kind, aiohttp.ClientError):
            raise UpstreamUnavailable(
                f"The upstream '{self._upstream.name}' could not be reached: {kind.__name__}."
            ) from None
        return False


def forward_headers(client_headers: Mapping[str, str], upstream: Upstream) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    provider = upstream.provider
    for name, value in client_headers.items():
        lowered = name.lower()
        if lowered not in _NOT_FORWARDED and not lowered.startswith("x-thriftgate-") and provider.forwards(lowered):
            headers.add(name, value)
    headers.update(provider.credentials(client_headers, upstream.api_key))
    headers[HOP_HEADER] = "1"
    return headers


def relayed_headers(upstream_headers: Mapping[str, str]) -> CIMultiDict[str]:
    headers = CIMultiDict(upstream_headers)  # copied in C, then those that stay here removed: 2x faster than a filter
    for name in _NOT_RELAYED_BACK:
        headers.popall(name, None)
    return headers
