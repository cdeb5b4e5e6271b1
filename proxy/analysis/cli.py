"""`thriftgate whatif`, `thriftgate selfhost` (selfhost_cli.py) and `thriftgate spend --by language`: offline,
from the ledger; none ever calls an upstream."""

import argparse
from collections.abc import Callable
from pathlib import Path

import yaml

from proxy.analysis import render, selfhost_cli
from proxy.analysis.cli_common import FORMATS, Failure, ledger_reader, output_format, run, window


def add_commands(commands: argparse._SubParsersAction, ledger_command: Callable) -> None:
    from proxy.analysis.batching import DEFAULT_TOLERANT_TAGS
    from proxy.analysis.whatif import GROUPINGS

    whatif = ledger_command(commands, "whatif", "reprice recorded traffic under other models, prices or policies",
                            since="30d")
    whatif.add_argument("--model", action="append", default=[], metavar="FROM=TO",
                        help="price what FROM answered at TO's prices (repeatable)")
    whatif.add_argument("--prices", help="a price table (YAML, like config/pricing.yaml) to reprice everything with")
    whatif.add_argument("--policies", help="a config or a YAML list of policies to re-evaluate on recorded requests")
    whatif.add_argument("--batch", action="store_true",
                        help="how much traffic could have gone through a Batch API, and what it would have saved")
    whatif.add_argument("--latency-tolerant-tags", default=",".join(DEFAULT_TOLERANT_TAGS),
                        help="with --batch: tags of requests that can wait for a batch (default %(default)s)")
    whatif.add_argument("--by", default="model", choices=GROUPINGS)
    whatif.add_argument("--format", choices=FORMATS, default="table")
    whatif.set_defaults(run=_whatif)
    selfhost_cli.add_command(commands, ledger_command)


def _whatif(args: argparse.Namespace) -> int:
    return run(lambda: whatif_text(args))


def whatif_text(args: argparse.Namespace) -> str:
    from proxy import config_loading
    from proxy.analysis.batching import batch_whatif
    from proxy.analysis.records import spend_rows
    from proxy.analysis.whatif import check, whatif

    config = config_loading.load(args.config)
    current = config_loading.price_table(config)
    since, until = window(args)
    scenario = scenario_from_args(args)
    check(scenario, current)  # bad input is refused before anything is read
    with ledger_reader(args, config) as reader:
        rows = lambda: spend_rows(reader, since, until)  # noqa: E731 (read twice when policies need measuring)
        if args.batch:
            tags = [tag.strip() for tag in args.latency_tolerant_tags.split(",") if tag.strip()]
            report = batch_whatif(rows(), current, by=args.by, tolerant_tags=tags, since=since, until=until)
            text = render.render(report, render.BATCH_COLUMNS, output_format(args))
            return text if output_format(args) != "table" else f"{text}\n{report['basis']}"
        report = whatif(rows, scenario, current, by=args.by, since=since, until=until)
    text = render.render(report, render.WHATIF_COLUMNS, output_format(args))
    return text if output_format(args) != "table" else f"{text}\n{render.bases_legend(report['total'])}"


def scenario_from_args(args: argparse.Namespace):
    from proxy.accounting.pricing import PriceTable
    from proxy.analysis.whatif import Scenario

    model_map = {}
    for pair in args.model:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise Failure(f"--model {pair}: expected FROM=TO, e.g. gpt-4o=gpt-4o-mini")
        model_map[source.strip()] = target.strip()
    prices = PriceTable.load([Path(args.prices)], {}) if args.prices else None
    policies = _candidate_policies(Path(args.policies)) if args.policies else ()
    return Scenario(model_map, prices, args.prices or "", policies)


def _candidate_policies(path: Path) -> tuple:
    from proxy.config import ConfigError
    from proxy.policies import registry

    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    entries = document.get("policies") if isinstance(document, dict) else document
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected a list of policies, or a config with a `policies:` list")
    return registry.parse(entries, str(path))


def language_report(args: argparse.Namespace) -> int:
    """`thriftgate spend --by language`: tokens per word by language and model family, from the ledger."""
    return run(lambda: _language_text(args))


def _language_text(args: argparse.Namespace) -> str:
    import json

    from proxy import config_loading
    from proxy.accounting.money import format_usd
    from proxy.accounting.reports import render_table
    from proxy.analysis.records import spend_rows
    from proxy.analysis.words import tokens_per_word

    since, until = window(args)
    with ledger_reader(args, config_loading.load(args.config)) as reader:
        rows = tokens_per_word(spend_rows(reader, since, until))
    if args.json:
        return json.dumps(rows, indent=2)
    if not rows:
        return "no whole text answers with counted words in this window"
    header = ("language", "family", "answers", "words", "output_tok", "tokens/word", "vs_english", "cost_usd")
    return render_table(header, [
        (r["language"], r["family"], str(r["answers"]), str(r["words"]), str(r["output_tokens"]),
         f"{r['tokens_per_word']:.2f}", "-" if r["vs_english"] is None else f"{r['vs_english']:.2f}x",
         format_usd(r["cost_nanos"])) for r in rows])
