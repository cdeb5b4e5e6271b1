"""`thriftgate lookup load FILE --scope --embedder` (through a running proxy's admin API) and
`thriftgate lookup report` (from the ledger)."""

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

LOAD_BATCH = 256  # question/answer pairs per admin call


def add_commands(commands: argparse._SubParsersAction, ledger_command: Callable, ledger_report: Callable) -> None:
    lookup = commands.add_parser("lookup", help="lookups: load operator answers, report hit rate and precision")
    actions = lookup.add_subparsers(required=True, metavar="ACTION")
    load = actions.add_parser("load", help="load question/answer pairs (JSON lines) for the answers policies")
    load.add_argument("file", help='JSON lines: {"question": "...", "answer": "..."}')
    load.add_argument("--scope", required=True, help="global, team:NAME or key:ID: whose requests see them")
    load.add_argument("--embedder", required=True, help="the embedder the answers policy uses")
    load.add_argument("--ttl", help="how long they live (30d, 12h); default: until deleted")
    load.add_argument("--url", help="the proxy (default: $THRIFTGATE_URL, else server.host:port of --config)")
    load.add_argument("--config", help="config file: the proxy's address and auth.master_key_env")
    load.set_defaults(run=_load)
    report = ledger_command(actions, "report", "hit rate, and precision by similarity band from shadow mode",
                            since="7d")
    report.add_argument("--max-wrong-rate", type=float, help="show the threshold this rate picks from the curve")
    report.set_defaults(run=lambda args: _report(args, ledger_report))


def _load(args: argparse.Namespace) -> int:
    from proxy.control.keys import admin_call

    pairs = []
    for number, line in enumerate(Path(args.file).read_text().splitlines(), start=1):
        if line.strip():
            try:
                pairs.append(json.loads(line))
            except ValueError as exc:
                print(f"thriftgate: {args.file}:{number}: not JSON: {exc}", file=sys.stderr)
                return 2
    query = {"scope": args.scope, "embedder": args.embedder} | ({"ttl": args.ttl} if args.ttl else {})
    loaded = 0
    for start in range(0, len(pairs), LOAD_BATCH):
        loaded += admin_call(args, "POST", "/admin/lookup/answers?" + urlencode(query),
                             pairs[start:start + LOAD_BATCH])["loaded"]
    print(f"loaded {loaded} answers into {args.scope} (embedder {args.embedder})")
    return 0


def _report(args: argparse.Namespace, ledger_report: Callable) -> int:
    from proxy.lookup.report import lookup_report, report_table

    return ledger_report(args, lambda reader, since, now: lookup_report(reader.lookup_rows(since=since),
                                                                        args.max_wrong_rate), report_table)
