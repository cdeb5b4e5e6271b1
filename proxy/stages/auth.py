"""Who is asking: a thriftgate key (`Authorization: Bearer tg-...`, or `x-api-key: tg-...` as Anthropic's
SDKs send it) -> key id and team; the master key.

Keys are stored only as the sha256 of their text. A key is found by its hash: config-declared
keys in a dict, created keys in the store (behind a short cache when the store is shared, so a
replica does not ask Redis on every request; a key it already knew keeps working while Redis is
down). The master key is compared in constant time. No key text is ever logged or kept.
"""

import base64
import functools
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from proxy.control.config import AuthConfig
from proxy.errors import BadRequest, Forbidden, ServiceUnavailable, Unauthorized
from proxy.exchange import Exchange
from proxy.control.keys import KEY_PREFIX, key_hash
from proxy.store import KeyRecord, Store, StoreUnavailable

USER_HEADER = "x-thriftgate-user"
_KEY_HEADERS = frozenset({"authorization", "x-api-key"})
MAX_USER_LENGTH = 128
_CACHE_LIMIT = 10_000
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def client_key(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: OpenAI's bearer token, or Anthropic's x-api-key (which wins when both are
    sent, as it does at Anthropic)."""
    return headers.get("x-api-key", "").strip() or bearer(headers)


def _basic_password(headers: Mapping[str, str]) -> str | None:
    """A browser's Basic credentials (any user name): how the /ui page takes the master key."""
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded.strip(), validate=True).decode().partition(":")[2] or None
    except (ValueError, UnicodeDecodeError):
        return None


@functools.lru_cache(maxsize=1024)
def _frozen_tags(tags: tuple[str, ...]) -> frozenset[str]:
    """A key's tags as a set, made once per distinct tuple rather than per request."""
    return frozenset(tags)


class Auth:
    def __init__(self, config: AuthConfig, store: Store, *, clock=time.monotonic) -> None:
        self._required = config.required
        self.declared = tuple(KeyRecord(k.id, k.team, k.sha256, created_at=0.0, source="config") for k in config.keys)
        self.declared_ids = frozenset(record.id for record in self.declared)
        self._declared = {record.sha256: record for record in self.declared}
        self.master_key_env = config.master_key_env
        master = config.master_key
        self._master_digest = hashlib.sha256(master.encode()).digest() if master else None
        self._store = store
        self._cache_seconds = config.key_cache_seconds if store.shared else 0.0
        self._cache: OrderedDict[str, tuple[KeyRecord, float]] = OrderedDict()  # digest -> (record, when)
        self._clock = clock
        # Keys exist only if declared, required, creatable (a master key guards the API) or shared.
        self.keys_possible = bool(self._required or self._declared or master or store.shared)

    @property
    def guards_admin(self) -> bool:
        return self._required or self._master_digest is not None

    async def authenticate(self, ex: Exchange) -> None:
        """Sets key_id, team and user, or raises Unauthorized; strips our key from what goes upstream."""
        headers = ex.request.headers
        user = headers.get(USER_HEADER)
        if user:
            if len(user) > MAX_USER_LENGTH:
                raise BadRequest(f"The {USER_HEADER} header must be at most {MAX_USER_LENGTH} characters.")
            ex.user = user
        if not self.keys_possible:
            return
        token = client_key(headers)
        if token is None:
            if self._required:
                raise Unauthorized("You didn't provide an API key. Send your thriftgate key as "
                                   "'Authorization: Bearer tg-...' (or 'x-api-key: tg-...').")
            return
        digest = key_hash(token)
        record = self._declared.get(digest)
        if record is None and (self._required or token.startswith(KEY_PREFIX)):
            record = await self._stored(digest)
            if record is None:
                raise Unauthorized("Incorrect API key provided.")
        if record is None:
            return  # not a thriftgate key: the client's own upstream key, passed on as before
        if record.revoked_at is not None:
            raise Unauthorized(f"The API key '{record.id}' has been revoked.")
        ex.key_id, ex.team, ex.key_budget_nanos = record.id, record.team, record.budget_nanos_per_day
        ex.tags = _frozen_tags(record.tags)
        upstream_headers = headers.copy()
        for name in _KEY_HEADERS:
            upstream_headers.popall(name, None)
        ex.upstream_headers = upstream_headers

    def require_master(self, request: web.Request, *, always: bool = False, what: str = "The admin API") -> None:
        """Admin routes: open only while auth is off and no master key is set (and `always` is False)."""
        if not (always or self.guards_admin):
            return
        if self._master_digest is None:
            raise Forbidden(f"{what} is disabled until a master key is set: {self._master_setting()}.",
                            code="admin_disabled")
        if not self._is_master(request):
            raise Unauthorized(f"{what} needs the master key as 'Authorization: Bearer <master key>'.")

    def _is_master(self, request: web.Request, token_digest: bytes | None = None) -> bool:
        token = bearer(request.headers) or _basic_password(request.headers)
        given = hashlib.sha256(token.encode()).digest() if token else b""
        return any(digest is not None and hmac.compare_digest(given, digest)
                   for digest in (self._master_digest, token_digest))

    def _master_setting(self) -> str:
        if self.master_key_env:
            return f"export {self.master_key_env}=... (the variable auth.master_key_env names)"
        return "set auth.master_key_env to the name of a variable holding it"

    def admin_guard(self, path: str, method: str, handler: Handler) -> Handler:
        """An /admin/ route's handler behind the master key: writes (and every key route) always need it;
        reads need it once it is set or auth is required. Per route, so other requests never pass through it."""
        writes = method not in _READS
        always = writes or path.startswith("/admin/keys")
        what = "Writing through the admin API" if writes else "The admin API"

        async def guarded(request: web.Request) -> web.StreamResponse:
            self.require_master(request, always=always, what=what)
            return await handler(request)

        return guarded

    def metrics_guard(self, mode: str, token: str | None, token_env: str) -> Callable[[Handler], Handler]:
        """`server.metrics_auth`: open (none), the master key, or a scrape token (the master key works too)."""

        def wrap(handler: Handler) -> Handler:
            if mode == "none":
                return handler
            token_digest = hashlib.sha256(token.encode()).digest() if mode == "token" and token else None

            async def guarded(request: web.Request) -> web.StreamResponse:
                if self._master_digest is None and token_digest is None:
                    setting = (f"export {token_env}=... (server.metrics_token_env)" if mode == "token"
                               else self._master_setting())
                    raise Forbidden(f"/metrics needs a credential (server.metrics_auth: {mode}) and none is set: "
                                    f"{setting}.", code="metrics_disabled")
                if not self._is_master(request, token_digest):
                    credential = "the scrape token or the master key" if mode == "token" else "the master key"
                    raise Unauthorized(f"/metrics needs {credential} as 'Authorization: Bearer <...>' "
                                       f"(server.metrics_auth: {mode}).")
                return await handler(request)

            return guarded

        return wrap

    def page_guard(self, handler: Handler) -> Handler:
        """For /ui: a browser asks for the master key (as the password of Basic auth) when auth is on."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                self.require_master(request)
            except Unauthorized as err:
                err.headers["WWW-Authenticate"] = 'Basic realm="thriftgate", charset="UTF-8"'
                raise
            return await handler(request)

        return guarded

    def forget(self, sha256: str) -> None:
        """A key revoked here stops working here at once (elsewhere within key_cache_seconds)."""
        self._cache.pop(sha256, None)

    async def _stored(self, digest: str) -> KeyRecord | None:
        cached = self._cache.get(digest)
        if cached is not None and self._clock() - cached[1] < self._cache_seconds:
            return cached[0]
        try:
            record = await self._store.key_by_hash(digest)
        except StoreUnavailable as exc:
            if cached is not None:
                return cached[0]  # known before the store went down: still trusted
            raise ServiceUnavailable(f"{exc} API keys cannot be checked until it is back.",
                                     code="key_store_unavailable") from None
        if record is not None and self._cache_seconds:
            # Oldest out, one at a time: with more keys in use than the cache holds, clearing it all would send
            # every key back to the store at once.
            self._cache.pop(digest, None)
            self._cache[digest] = (record, self._clock())
            if len(self._cache) > _CACHE_LIMIT:
                self._cache.popitem(last=False)  # an OrderedDict: a plain dict emptied from its front slows down
        return record

