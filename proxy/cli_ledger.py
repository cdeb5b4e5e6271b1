"""The commands that read the ledger: `spend`, `savings`, `ledger migrate | export`, and what every command
reading it shares (where the ledger is, from when, table or JSON)."""

import argparse
import contextlib
import json
import sys
import time

from proxy import config as config_module
from proxy import config_loading
from proxy.accounting import reports
from proxy.accounting.ledger_sql import SPEND_GROUPINGS
from proxy.accounting.savings import savings_report
from proxy.analysis import cli as analysis_cli


def add_report_commands(commands: argparse._SubParsersAction) -> None:
    spend_command = ledger_command(commands, "spend", "spend from the ledger, as a table", since="24h")
    spend_command.add_argument("--by", default="model", choices=SPEND_GROUPINGS,
                               metavar="{" + ",".join(SPEND_GROUPINGS) + "}",
                               help="what to group by (default model); tag: a row counts under each of its tags;"
                                    " language adds tokens per word by model family")
    spend_command.add_argument("--source", choices=("fleet", "ledger"),
                               help="ledger: the ledger (with ledger.backend: postgres, the whole fleet's, the "
                                    "default); fleet: every replica's daily totals in Redis (the default with "
                                    "store.backend: redis and an SQLite ledger, --by model, team, key or day)")
    spend_command.set_defaults(run=spend)

    savings_command = ledger_command(commands, "savings", "what each policy saved, treated vs held out", since="7d")
    savings_command.set_defaults(run=savings)


def add_ledger_commands(commands: argparse._SubParsersAction) -> None:
    ledger = commands.add_parser("ledger", help="ledger database tools").add_subparsers(required=True, metavar="ACTION")
    migrate = ledger.add_parser("migrate", help="create or bring the ledger's schema up to date")
    migrate.add_argument("--config", help="config file naming the ledger (default: embedded defaults)")
    migrate.add_argument("--ledger", help="ledger file (overrides the config)")
    migrate.set_defaults(run=ledger_migrate)
    export = ledger_command(ledger, "export", "every ledger row since a time, for finance", since="30d")
    export.add_argument("--format", choices=("csv", "jsonl", "parquet"), default="csv")
    export.add_argument("--out", help="file to write (default: stdout; parquet needs a file)")
    export.set_defaults(run=ledger_export)


def ledger_command(commands, name: str, help: str, *, since: str) -> argparse.ArgumentParser:
    """A command that reads the ledger: where it is, from when, and table or JSON."""
    command = commands.add_parser(name, help=help)
    command.add_argument("--config", help="config file naming the ledger (default: embedded defaults)")
    command.add_argument("--ledger", help="ledger file (overrides the config)")
    command.add_argument("--since", default=since, help=f"24h, 7d, an ISO date or a unix time (default {since})")
    command.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return command


def spend(args: argparse.Namespace) -> int:
    from proxy.store import SPEND_DIMENSIONS

    if args.by == "language":  # tokens per word beside the spend
        return analysis_cli.language_report(args)
    config = config_loading.load(args.config)
    store = config.store
    if args.source == "fleet" or (args.source is None and not args.ledger and store.backend == "redis"
                                  and config.ledger.backend != "postgres" and args.by in SPEND_DIMENSIONS):
        return _fleet_spend(args, store)
    return ledger_report(args, lambda reader, since, now: reader.spend(by=args.by, since=since),
                         lambda rows: reports.spend_table(args.by, rows))


def _fleet_spend(args: argparse.Namespace, store: config_module.StoreConfig) -> int:
    from proxy.accounting.ledger import parse_since
    from proxy.store import StoreUnavailable
    from proxy.store.backends import read_fleet_spend

    now = time.time()
    try:
        rows = read_fleet_spend(store, args.by, parse_since(args.since, now), now)
    except (StoreUnavailable, ValueError) as exc:
        print(f"thriftgate: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else reports.spend_table(args.by, rows))
    return 0


def savings(args: argparse.Namespace) -> int:
    return ledger_report(
        args,
        lambda reader, since, now: savings_report(reader.policy_rows(since=since), since=since, until=now),
        reports.savings_table,
    )


def ledger_report(args: argparse.Namespace, query, table) -> int:
    from proxy.accounting.ledger import parse_since

    now = time.time()
    try:
        since = parse_since(args.since, now)
    except ValueError as exc:
        print(f"thriftgate: --since: {exc}", file=sys.stderr)
        return 2
    with _reader(args) as reader:
        rows = query(reader, since, now)
    print(json.dumps(rows, indent=2) if getattr(args, "json", False) else table(rows))
    return 0


@contextlib.contextmanager
def _reader(args: argparse.Namespace):
    """The ledger the arguments name, or one clear line and exit status 1."""
    from proxy.analysis.cli_common import Failure, ledger_reader

    try:
        reader = ledger_reader(args, config_loading.load(args.config))
    except Failure as exc:
        print(f"thriftgate: {exc}", file=sys.stderr)
        raise SystemExit(exc.code) from None
    with reader:
        yield reader


def ledger_migrate(args: argparse.Namespace) -> int:
    from proxy.accounting.ledger import migrate_sqlite
    from proxy.accounting.ledger_postgres import LedgerUnavailable, PostgresReader

    ledger = config_loading.load(args.config).ledger
    if args.ledger or ledger.backend == "sqlite":
        import sqlite3

        with contextlib.closing(sqlite3.connect(args.ledger or ledger.path)) as conn:
            applied = migrate_sqlite(conn)
    else:
        try:
            with PostgresReader(ledger, check=False) as database:
                applied = database.migrate()
        except LedgerUnavailable as exc:
            print(f"thriftgate: {exc}", file=sys.stderr)
            return 1
    print("applied: " + ", ".join(applied) if applied else "the ledger's schema is up to date")
    return 0


def ledger_export(args: argparse.Namespace) -> int:
    from proxy.accounting.ledger import parse_since
    from proxy.accounting.ledger_export import export
    from proxy.accounting.ledger_sql import Filters

    try:
        since = parse_since(args.since, time.time())
        with _reader(args) as reader:
            count = export(reader, Filters(since=since), args.format, args.out)
    except ValueError as exc:
        print(f"thriftgate: {exc}", file=sys.stderr)
        return 2
    print(f"exported {count} rows" + (f" to {args.out}" if args.out else ""), file=sys.stderr)
    return 0
