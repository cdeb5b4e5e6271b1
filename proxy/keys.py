"""Virtual keys: the admin API (`/admin/keys`, master key only) and the `thriftgate keys` commands.

The commands always go through a running proxy's admin API (`--url`, the master key from the
environment), whatever the store: one way that works for the in-process store and for Redis alike.
A key's text is shown once, when it is created; the store keeps its sha256.
"""

import argparse
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal, InvalidOperation

from aiohttp import web

from proxy.auth import key_hash, new_key
from proxy.control_config import NAME_PATTERN
from proxy.errors import BadRequest, NotFound, ProxyError, ServiceUnavailable
from proxy.money import nanos_to_usd, usd_to_nanos
from proxy.store import KeyRecord, StoreUnavailable

log = logging.getLogger("thriftgate.keys")
_NAME = re.compile(NAME_PATTERN)
_CREATE_FIELDS = ("name", "team", "budget_usd_per_day")


class Conflict(ProxyError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


def add_routes(router: web.UrlDispatcher, auth_key: web.AppKey, store_key: web.AppKey) -> None:
    api = _KeysApi(auth_key, store_key)
    router.add_post("/admin/keys", api.create)
    router.add_get("/admin/keys", api.list)
    router.add_get("/admin/keys/{key_id}", api.get)
    router.add_delete("/admin/keys/{key_id}", api.revoke)


class _KeysApi:
    def __init__(self, auth_key: web.AppKey, store_key: web.AppKey) -> None:
        self._auth_key, self._store_key = auth_key, store_key

    async def create(self, request: web.Request) -> web.Response:
        auth, store = self._services(request)
        body = await _json_object(request)
        for field in body:
            if field not in _CREATE_FIELDS:
                raise BadRequest(f"Unknown field '{field}'; expected {', '.join(_CREATE_FIELDS)}.", param=field)
        name, team = _name(body, "name"), _name(body, "team")
        budget = _budget(body.get("budget_usd_per_day"))
        if name in auth.declared_ids:
            raise Conflict(f"The key id '{name}' is declared in the config.", param="name")
        key = new_key()
        record = KeyRecord(name, team, key_hash(key), created_at=time.time(), budget_nanos_per_day=budget)
        if not await _stored(store.add_key(record)):
            raise Conflict(f"A key with the id '{name}' exists already (ids of revoked keys are not reused).",
                           param="name")
        log.info("created key %s for team %s", name, team)
        return web.json_response({"key": key, **_shown(record)}, status=201)

    async def list(self, request: web.Request) -> web.Response:
        auth, store = self._services(request)
        records = await _stored(store.keys())
        shown = [_shown(r) for r in records] + [{"id": i, "source": "config"} for i in sorted(auth.declared_ids)]
        return web.json_response({"keys": sorted(shown, key=lambda r: r["id"])})

    async def get(self, request: web.Request) -> web.Response:
        _, store = self._services(request)
        key_id = request.match_info["key_id"]
        found = [r for r in await _stored(store.keys()) if r.id == key_id]
        if not found:
            raise NotFound(f"No key with id '{key_id}' in the store.", param="key_id")
        return web.json_response(_shown(found[0]))

    async def revoke(self, request: web.Request) -> web.Response:
        auth, store = self._services(request)
        key_id = request.match_info["key_id"]
        if key_id in auth.declared_ids:
            raise Conflict(f"The key '{key_id}' is declared in the config: remove it there.", param="key_id")
        record = await _stored(store.revoke_key(key_id, time.time()))
        if record is None:
            raise NotFound(f"No key with id '{key_id}' in the store.", param="key_id")
        auth.forget(record.sha256)
        log.info("revoked key %s", key_id)
        return web.json_response(_shown(record))

    def _services(self, request: web.Request):
        auth = request.app[self._auth_key]
        auth.require_master(request, always=True)
        return auth, request.app[self._store_key]


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
    if usd is None or not usd.is_finite() or usd <= 0:
        raise BadRequest("'budget_usd_per_day' must be a positive number of US dollars.", param="budget_usd_per_day")
    return usd_to_nanos(usd)


def _shown(record: KeyRecord) -> dict:
    budget = record.budget_nanos_per_day
    return {"id": record.id, "team": record.team, "created_at": record.created_at, "revoked_at": record.revoked_at,
            "budget_usd_per_day": None if budget is None else str(nanos_to_usd(budget)), "source": record.source}


# ---- `thriftgate keys ...` ----

def add_commands(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="virtual keys, through a running proxy's admin API")
    actions = keys.add_subparsers(required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key; its text is printed once")
    create.add_argument("--name", required=True, help="the key's id (in the ledger, in key:ID budget scopes)")
    create.add_argument("--team", required=True)
    create.add_argument("--budget-usd-per-day", help="this key's own daily budget")
    create.set_defaults(run=_create)
    listing = actions.add_parser("list", help="every key, revoked ones included")
    listing.set_defaults(run=_list)
    revoke = actions.add_parser("revoke", help="revoke a key (its id stays taken)")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_revoke)
    for action in (create, listing, revoke):
        action.add_argument("--url", help="the proxy (default: $THRIFTGATE_URL, else server.host:port of --config)")
        action.add_argument("--config", help="config file: the proxy's address and auth.master_key_env")
        action.add_argument("--json", action="store_true", help="print JSON")
    generate = actions.add_parser("generate", help="a new key and its sha256, for auth.keys in the config")
    generate.set_defaults(run=_generate)


def _create(args: argparse.Namespace) -> int:
    body = {"name": args.name, "team": args.team}
    if args.budget_usd_per_day is not None:
        body["budget_usd_per_day"] = args.budget_usd_per_day
    record = _call(args, "POST", "/admin/keys", body)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(record["key"])
    budget = f", ${record['budget_usd_per_day']} a day" if record["budget_usd_per_day"] else ""
    print(f"created key '{record['id']}' for team '{record['team']}'{budget}. Keep it now: thriftgate stores only "
          "its hash and cannot show it again.", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    records = _call(args, "GET", "/admin/keys")["keys"]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    for r in records:
        state = "revoked" if r.get("revoked_at") else "active"
        budget = f"${r['budget_usd_per_day']}/day" if r.get("budget_usd_per_day") else "-"
        print(f"{r['id']:<24} {r.get('team') or '-':<16} {state:<8} {budget:<14} {r['source']}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    record = _call(args, "DELETE", f"/admin/keys/{args.key_id}")
    print(json.dumps(record, indent=2) if args.json else f"revoked key '{record['id']}'")
    return 0


def _generate(args: argparse.Namespace) -> int:
    key = new_key()
    print(key)
    print(f"sha256: {key_hash(key)}  (auth.keys: [{{id: ..., team: ..., sha256: \"{key_hash(key)}\"}}])",
          file=sys.stderr)
    return 0


def _call(args: argparse.Namespace, method: str, path: str, body: dict | None = None) -> dict:
    from proxy import config as config_module

    config = config_module.load(args.config)
    url = args.url or os.environ.get("THRIFTGATE_URL") or _address(config.server.host, config.server.port)
    master = config.auth.master_key
    if master is None:
        raise SystemExit(f"thriftgate: set the master key in ${config.auth.master_key_env} to manage keys")
    request = urllib.request.Request(
        url.rstrip("/") + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {master}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise SystemExit(f"thriftgate: {exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise SystemExit(f"thriftgate: cannot reach the proxy at {url}: {exc.reason}") from None


def _address(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
