"""`thriftgate COMMAND`: the command line, each group of commands from the module of its concern (serve and
check-config: cli_serve.py; the ledger's reports and tools: cli_ledger.py; keys, lookup, analysis: their
packages' own)."""

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from proxy import cli_ledger, cli_serve
from proxy import config as config_module
from proxy.analysis import cli as analysis_cli
from proxy.control import keys
from proxy.lookup import cli as lookup_cli


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
    cli_serve.add_commands(commands)
    cli_ledger.add_report_commands(commands)

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

    cli_ledger.add_ledger_commands(commands)

    keys.add_commands(commands)
    lookup_cli.add_commands(commands, cli_ledger.ledger_command, cli_ledger.ledger_report)
    analysis_cli.add_commands(commands, cli_ledger.ledger_command)

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
