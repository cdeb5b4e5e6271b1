"""`thriftgate serve | check-config | spend | demo | pricing import`."""

import argparse
import contextlib
import functools
from importlib import metadata
import json
import logging
import logging.handlers
import queue
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from proxy import config as config_module
from proxy import config_loading
from proxy.accounting import reports
from proxy.analysis import cli as analysis_cli
from proxy.control import keys
from proxy.lookup import cli as lookup_cli
from proxy.control.config import workers_problem
from proxy.accounting.ledger_sql import SPEND_GROUPINGS
from proxy.accounting.savings import savings_report


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except config_module.ConfigError as exc:
        print(f"thriftgate: invalid configuration\n{exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thriftgate", description="Cost-control proxy for LLM APIs.")
    parser.add_argument("--version", action="version", version=f"thriftgate {_version()}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", help="YAML config file (default: embedded defaults)")
    serve.add_argument("--host", help="listen address (overrides server.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides server.port)")
    serve.add_argument("--workers", type=_positive_int, default=1,
                       help="processes sharing the port; /metrics adds them all up (default 1)")
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check-config", help="validate a config and print the resolved settings")
    check.add_argument("file")
    check.set_defaults(run=_check_config)

    spend = _ledger_command(commands, "spend", "spend from the ledger, as a table", since="24h")
    spend.add_argument("--by", default="model", choices=SPEND_GROUPINGS, metavar="{" + ",".join(SPEND_GROUPINGS) + "}",
                       help="what to group by (default model); tag: a row counts under each of its tags;"
                            " language adds tokens per word by model family")
    spend.add_argument("--source", choices=("fleet", "ledger"),
                       help="ledger: the ledger (with ledger.backend: postgres, the whole fleet's, the default); "
                            "fleet: every replica's daily totals in Redis (the default with store.backend: redis and "
                            "an SQLite ledger, --by model, team, key or day)")
    spend.set_defaults(run=_spend)

    savings = _ledger_command(commands, "savings", "what each policy saved, treated vs held out", since="7d")
    savings.set_defaults(run=_savings)

    demo = commands.add_parser("demo", help="a simulated provider and realistic traffic through the proxy")
    demo.add_argument("--duration", type=float, default=60, help="seconds of traffic; 0 runs until Ctrl-C (default 60)")
    demo.add_argument("--requests", type=int, help="stop after this many requests (with --seed: the same traffic each run)")
    demo.add_argument("--rps", type=float, default=5, help="requests per second, on average (default 5)")
    demo.add_argument("--port", type=int, default=4100, help="port of the demo's own proxy (default 4100)")
    demo.add_argument("--host", default="127.0.0.1", help="address of the demo's own proxy (default 127.0.0.1)")
    demo.add_argument("--ledger", default="thriftgate-demo.db", help="its ledger, never the real one (default %(default)s)")
    demo.add_argument("--target", help="send the traffic to this running proxy (http://host:port) instead of its own")
    demo.add_argument("--upstream-host", default="127.0.0.1", help="address of the simulated provider")
    demo.add_argument("--upstream-port", type=int, default=0, help="port of the simulated provider (default: any free)")
    demo.add_argument("--seed", type=int, help="random seed, for a repeatable run")
    demo.set_defaults(run=_demo)

    ledger = commands.add_parser("ledger", help="ledger database tools").add_subparsers(required=True, metavar="ACTION")
    migrate = ledger.add_parser("migrate", help="create or bring the ledger's schema up to date")
    migrate.add_argument("--config", help="config file naming the ledger (default: embedded defaults)")
    migrate.add_argument("--ledger", help="ledger file (overrides the config)")
    migrate.set_defaults(run=_ledger_migrate)
    export = _ledger_command(ledger, "export", "every ledger row since a time, for finance", since="30d")
    export.add_argument("--format", choices=("csv", "jsonl", "parquet"), default="csv")
    export.add_argument("--out", help="file to write (default: stdout; parquet needs a file)")
    export.set_defaults(run=_ledger_export)

    keys.add_commands(commands)
    lookup_cli.add_commands(commands, _ledger_command, _ledger_report)
    analysis_cli.add_commands(commands, _ledger_command)

    pricing = commands.add_parser("pricing", help="price table tools").add_subparsers(required=True, metavar="ACTION")
    pricing_import = pricing.add_parser("import", help="convert a LiteLLM-format price map into our table")
    pricing_import.add_argument("file", help="LiteLLM's model_prices_and_context_window.json, or a litellm wheel")
    pricing_import.add_argument("--out", help="write the table here (never over the shipped one); default: stdout. "
                                "Use it with pricing.files in the config")
    pricing_import.add_argument("--providers", nargs="*", help="only these LiteLLM providers")
    pricing_import.set_defaults(run=_pricing_import)
    return parser


def _version() -> str:
    try:
        return metadata.version("thriftgate")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def _ledger_command(commands, name: str, help: str, *, since: str) -> argparse.ArgumentParser:
    """A command that reads the ledger: where it is, from when, and table or JSON."""
    command = commands.add_parser(name, help=help)
    command.add_argument("--config", help="config file naming the ledger (default: embedded defaults)")
    command.add_argument("--ledger", help="ledger file (overrides the config)")
    command.add_argument("--since", default=since, help=f"24h, 7d, an ISO date or a unix time (default {since})")
    command.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return command


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _serve(args: argparse.Namespace) -> int:
    config = config_loading.load(args.config)
    server = config.server.model_copy(
        update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    )
    config = config.model_copy(update={"server": server})
    _refuse_self_loop(config)
    if args.workers > 1 and (problem := workers_problem(config.store, config.budgets, config.auth)):
        raise config_module.ConfigError(f"--workers {args.workers}: {problem}")
    serve_one = functools.partial(_serve_process, config_path=Path(args.config) if args.config else None)
    if args.workers > 1:
        from proxy import serving
        from proxy.workers import supervise

        try:  # once here, rather than once in every worker
            for sock in serving.bind(config.server.host, config.server.port, reuse_port=True):
                sock.close()
        except serving.CannotListen as exc:
            print(f"thriftgate: {exc}", file=sys.stderr)
            return 1
        _configure_logging(config)
        return supervise(config, args.workers, serve_one)
    serve_one(config)
    return 0


def _serve_process(
    config: config_module.Config, metrics_dir: str | None = None, *, config_path: Path | None = None
) -> None:
    """One server process: the whole proxy, or with a metrics_dir one of the --workers sharing the port."""
    import asyncio

    from proxy import serving
    from proxy.app import make_app
    from proxy.appkeys import IN_FLIGHT

    server = config.server
    try:
        sockets = serving.bind(server.host, server.port, reuse_port=metrics_dir is not None)  # workers share it
    except serving.CannotListen as exc:
        print(f"thriftgate: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    access_writer = _configure_logging(config)
    for warning in config_module.warnings(config):
        logging.getLogger("thriftgate").warning("%s", warning)
    try:
        import uvloop
    except ImportError:
        uvloop = None

    def announce() -> None:
        logging.getLogger("thriftgate").info(
            "thriftgate listening on %s -> %s", ", ".join(f"http://{a}/v1" for a in serving.addresses(sockets)),
            ", ".join(f"{u.name}={u.base_url}" for u in config.upstreams),
        )

    try:
        app = make_app(config, metrics_dir=metrics_dir, config_path=config_path, handle_sighup=True)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
            runner.run(serving.serve(app, sockets, in_flight=app[IN_FLIGHT], grace=server.shutdown_grace_seconds,
                                     announce=announce))
    finally:
        for sock in sockets:
            sock.close()
        if access_writer is not None:
            access_writer.stop()  # writes every queued line


def _refuse_self_loop(config: config_module.Config) -> None:
    """OPENAI_BASE_URL is often exported for the app *and* read by us: catch it pointing at ourselves."""
    local = {"localhost", "127.0.0.1", "::1", "0.0.0.0", config.server.host}
    for upstream in config.upstreams:
        parts = urlsplit(upstream.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.hostname in local and port == config.server.port:
            raise config_module.ConfigError(
                f"upstreams[{upstream.name}].base_url: {upstream.base_url} is this proxy's own address; "
                "set OPENAI_BASE_URL for the proxy to the real provider (or configure upstreams)"
            )


def _configure_logging(config: config_module.Config) -> logging.handlers.QueueListener | None:
    """Access lines go through a queue to a writer thread: the event loop never waits on stdout."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    access = logging.getLogger("thriftgate.access")
    access.propagate = False
    if not config.server.access_log or access.handlers:
        return None
    writer = logging.StreamHandler(sys.stdout)
    writer.setFormatter(logging.Formatter("%(message)s"))
    lines: queue.SimpleQueue = queue.SimpleQueue()
    access.addHandler(logging.handlers.QueueHandler(lines))
    listener = logging.handlers.QueueListener(lines, writer)
    listener.start()
    return listener


def _check_config(args: argparse.Namespace) -> int:
    config = config_loading.load(args.file)
    from proxy.accounting.pricing import PriceTable, default_pricing_path

    files = list(config.pricing.files or [default_pricing_path()])
    overrides = {m: o.model_dump(exclude_none=True) for m, o in config.pricing.overrides.items()}
    table = PriceTable.load(files, overrides)
    print(json.dumps(config_module.masked_summary(config), indent=2))
    for warning in config_module.warnings(config):
        print(f"# warning: {warning}", file=sys.stderr)
    print(f"# {args.file}: valid; {len(table.models)} priced models", file=sys.stderr)
    return 0


def _spend(args: argparse.Namespace) -> int:
    from proxy.store import SPEND_DIMENSIONS

    if args.by == "language":  # tokens per word beside the spend
        return analysis_cli.language_report(args)
    config = config_loading.load(args.config)
    store = config.store
    if args.source == "fleet" or (args.source is None and not args.ledger and store.backend == "redis"
                                  and config.ledger.backend != "postgres" and args.by in SPEND_DIMENSIONS):
        return _fleet_spend(args, store)
    return _ledger_report(args, lambda reader, since, now: reader.spend(by=args.by, since=since),
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


def _savings(args: argparse.Namespace) -> int:
    return _ledger_report(
        args,
        lambda reader, since, now: savings_report(reader.policy_rows(since=since), since=since, until=now),
        reports.savings_table,
    )


def _ledger_report(args: argparse.Namespace, query, table) -> int:
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


def _ledger_migrate(args: argparse.Namespace) -> int:
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


def _ledger_export(args: argparse.Namespace) -> int:
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


def _demo(args: argparse.Namespace) -> int:
    from proxy.demo import run as demo

    return demo.run(args)


def _pricing_import(args: argparse.Namespace) -> int:
    from proxy.accounting.pricing import default_pricing_path
    from proxy.accounting.pricing_import import PriceMapError, import_file

    out = Path(args.out) if args.out and args.out != "-" else None
    if out is not None and out.resolve() == default_pricing_path().resolve():
        print(f"thriftgate: --out {args.out} is the shipped price table, which stays as shipped: write the "
              "import elsewhere and list it in the config's pricing.files", file=sys.stderr)
        return 2
    try:
        text, count = import_file(Path(args.file), providers=set(args.providers) if args.providers else None)
    except PriceMapError as exc:
        print(f"thriftgate: {exc}", file=sys.stderr)
        return 2
    if out is None:
        sys.stdout.write(text)
        print(f"# {count} models", file=sys.stderr)
        return 0
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"thriftgate: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {count} models to {out}", file=sys.stderr)
    return 0
