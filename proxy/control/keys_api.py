"""The admin API for virtual keys: create, list, show and revoke under /admin/keys (master key only).

A key's text is in the answer to its creation and nowhere else: the store keeps its sha256.
"""

import json
import logging
import re
import time
from decimal import Decimal, InvalidOperation

from aiohttp import web

from proxy.appkeys import AUTH, STORE
from proxy.control.config import NAME_PATTERN
from proxy.errors import BadRequest, NotFound, ProxyError, ServiceUnavailable
from proxy.control.keys import key_hash, new_key
from proxy.accounting.money import MAX_EXACT_USD, nanos_to_usd, usd_to_nanos
from proxy.stages.tags import TAGS_HEADER, parse_tags
from proxy.store import KeyRecord, StoreUnavailable
from proxy.routes import GuardedRouter

log = logging.getLogger("thriftgate.keys")
_NAME = re.compile(NAME_PATTERN)
_CREATE_FIELDS = ("name", "team", "budget_usd_per_day", "tags")


class Conflict(ProxyError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


def add_routes(router: GuardedRouter) -> None:
    """Behind the admin guard (auth.Auth.admin_guard), only master-key requests reach these."""
    router.add_post("/admin/keys", create)
    router.add_get("/admin/keys", list_keys)
    router.add_get("/admin/keys/{key_id}", get_key)
    router.add_delete("/admin/keys/{key_id}", revoke)


async def create(request: web.Request) -> web.Response:
    auth, store = request.app[AUTH], request.app[STORE]
    body = await _json_object(request)
    for field in body:
        if field not in _CREATE_FIELDS:
            raise BadRequest(f"Unknown field '{field}'; expected {', '.join(_CREATE_FIELDS)}.", param=field)
    name, team = _name(body, "name"), _name(body, "team")
    budget = _budget(body.get("budget_usd_per_day"))
    if name in auth.declared_ids:
        raise Conflict(f"The key id '{name}' is declared in the config.", param="name")
    key = new_key()
    record = KeyRecord(name, team, key_hash(key), created_at=time.time(), budget_nanos_per_day=budget,
                       tags=_tags(body.get("tags")))
    if not await _stored(store.add_key(record)):
        raise Conflict(f"A key with the id '{name}' exists already (ids of revoked keys are not reused).",
                       param="name")
    log.info("created key %s for team %s", name, team)
    return web.json_response({"key": key, **_shown(record)}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    auth, store = request.app[AUTH], request.app[STORE]
    records = await _stored(store.keys())
    shown = [_shown(r) for r in (*records, *auth.declared)]
    return web.json_response({"keys": sorted(shown, key=lambda r: r["id"])})


async def get_key(request: web.Request) -> web.Response:
    store = request.app[STORE]
    key_id = request.match_info["key_id"]
    found = [r for r in await _stored(store.keys()) if r.id == key_id]
    if not found:
        raise NotFound(f"No key with id '{key_id}' in the store.", param="key_id")
    return web.json_response(_shown(found[0]))


async def revoke(request: web.Request) -> web.Response:
    auth, store = request.app[AUTH], request.app[STORE]
    key_id = request.match_info["key_id"]
    if key_id in auth.declared_ids:
        raise Conflict(f"The key '{key_id}' is declared in the config: remove it there.", param="key_id")
    record = await _stored(store.revoke_key(key_id, time.time()))
    if record is None:
        raise NotFound(f"No key with id '{key_id}' in the store.", param="key_id")
    auth.forget(record.sha256)
    log.info("revoked key %s", key_id)
    return web.json_response(_shown(record))


async def _stored(call):
    try:
        return await call
    except StoreUnavailable as exc:
        raise ServiceUnavailable(str(exc), code="key_store_unavailable") from None


async def _json_object(request: web.Request) -> dict:
    try:
        body = json.loads(await request.read() or b"null")
    except ValueError:
        raise BadRequest("The body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def _name(body: dict, field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not _NAME.match(value):
        raise BadRequest(f"'{field}' must be 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter "
                         "or digit.", param=field)
    return value



def _budget(value: object) -> int | None:
    if value is None:
        return None
    try:
        usd = Decimal(str(value)) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    except InvalidOperation:
        usd = None
    if usd is None or not usd.is_finite() or usd <= 0 or usd > MAX_EXACT_USD:
        raise BadRequest(f"'budget_usd_per_day' must be a positive number of US dollars, at most "
                         f"{MAX_EXACT_USD}.", param="budget_usd_per_day")
    return usd_to_nanos(usd)


def _tags(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise BadRequest("'tags' must be a list of strings.", param="tags")
    try:
        return tuple(sorted(parse_tags(",".join(value))))
    except BadRequest as exc:
        raise BadRequest(exc.message.replace(f"The {TAGS_HEADER} header", "'tags'"), param="tags") from None


def _shown(record: KeyRecord) -> dict:
    budget = record.budget_nanos_per_day
    return {"id": record.id, "team": record.team, "created_at": record.created_at or None,
            "revoked_at": record.revoked_at, "budget_usd_per_day": None if budget is None else f"{nanos_to_usd(budget):f}", "source": record.source,
            "tags": list(record.tags)}
