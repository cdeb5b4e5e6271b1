"""Virtual keys: their text and hash, and the `thriftgate keys` commands.

The commands always go through a running proxy's admin API (`--url`, the master key from the
environment), whatever the store: one way that works for the in-process store and for Redis alike.
Only the standard library here: the CLI starts fast.
"""

import argparse
import hashlib
import json
import os
import secrets
import sys
import urllib.error
import urllib.request

KEY_PREFIX = "tg-"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(24)  # 32 url-safe characters: 192 random bits


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def add_commands(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="virtual keys, through a running proxy's admin API")
    actions = keys.add_subparsers(required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key; its text is printed once")
    create.add_argument("--name", required=True, help="the key's id (in the ledger, in key:ID budget scopes)")
    create.add_argument("--team", required=True)
    create.add_argument("--budget-usd-per-day", help="this key's own daily budget")
    create.add_argument("--tags", help="comma-separated tags on every request made with the key (ledger rows)")
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
    if args.tags:
        body["tags"] = [tag.strip() for tag in args.tags.split(",") if tag.strip()]
    record = admin_call(args, "POST", "/admin/keys", body)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(record["key"])
    budget = f", ${record['budget_usd_per_day']} a day" if record["budget_usd_per_day"] else ""
    print(f"created key '{record['id']}' for team '{record['team']}'{budget}. Keep it now: thriftgate stores only "
          "its hash and cannot show it again.", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    records = admin_call(args, "GET", "/admin/keys")["keys"]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    for r in records:
        state = "revoked" if r.get("revoked_at") else "active"
        budget = f"${r['budget_usd_per_day']}/day" if r.get("budget_usd_per_day") else "-"
        print(f"{r['id']:<24} {r.get('team') or '-':<16} {state:<8} {budget:<14} {r['source']}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    record = admin_call(args, "DELETE", f"/admin/keys/{args.key_id}")
    print(json.dumps(record, indent=2) if args.json else f"revoked key '{record['id']}'")
    return 0


def _generate(args: argparse.Namespace) -> int:
    key = new_key()
    print(key)
    print(f"sha256: {key_hash(key)}  (auth.keys: [{{id: ..., team: ..., sha256: \"{key_hash(key)}\"}}])",
          file=sys.stderr)
    return 0


def admin_call(args: argparse.Namespace, method: str, path: str, body: dict | None = None) -> dict:
    """One call to a running proxy's admin API with the master key (the CLI's way to keys and lookups)."""
    from proxy import config_loading

    config = config_loading.load(args.config)
    url = args.url or os.environ.get("THRIFTGATE_URL") or _address(config.server.host, config.server.port)
    master = config.auth.master_key
    if master is None:
        raise SystemExit(f"thriftgate: set the master key in ${config.auth.master_key_env} to use the admin API")
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
