"""What the offline analysis commands share: argument types, the window, the ledger, errors as exit codes."""

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

FORMATS = ("table", "json", "csv")


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text}")
    return value


class Failure(Exception):
    """A bad input, reported as `thriftgate: <message>` with exit status `code` (2: the input, 1: no ledger)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def run(body: Callable[[], str]) -> int:
    from proxy.accounting.price_files import PricingError
    from proxy.analysis.selfhost import SelfHostError
    from proxy.analysis.whatif import WhatIfError
    from proxy.config import ConfigError

    try:
        print(body())
    except Failure as exc:
        print(f"thriftgate: {exc}", file=sys.stderr)
        return exc.code
    except (WhatIfError, SelfHostError, PricingError, ConfigError) as exc:
        print(f"thriftgate: {exc}", file=sys.stderr)
        return 2
    return 0


def window(args: argparse.Namespace) -> tuple[float, float]:
    from proxy.accounting.ledger import parse_since

    now = time.time()
    try:
        return parse_since(args.since, now), now
    except ValueError as exc:
        raise Failure(f"--since: {exc}") from None


def ledger_reader(args: argparse.Namespace, config):
    """The ledger the arguments name: `--ledger FILE`, else the config's (an SQLite file, or the fleet's
    PostgreSQL). Failure (exit status 1) when there is no such file, the database cannot be reached, or it is
    of an older schema (it names the command that migrates it)."""
    from proxy.accounting.ledger_backends import open_reader
    from proxy.accounting.ledger_postgres import LedgerUnavailable
    from proxy.accounting.ledger_read import OutdatedLedger

    ledger = config.ledger
    if (args.ledger or ledger.backend == "sqlite") and not Path(args.ledger or ledger.path).is_file():
        raise Failure(f"no ledger at {args.ledger or ledger.path}", code=1)
    try:
        return open_reader(ledger, args.ledger)
    except (LedgerUnavailable, OutdatedLedger) as exc:
        raise Failure(str(exc), code=1) from None


def output_format(args: argparse.Namespace) -> str:
    return "json" if args.json else args.format
