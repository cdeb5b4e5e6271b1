"""`thriftgate whatif` and `thriftgate selfhost`: offline, from the ledger; neither ever calls an upstream."""

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from proxy.analysis import render

FORMATS = ("table", "json", "csv")


def add_commands(commands: argparse._SubParsersAction, ledger_command: Callable) -> None:
    from proxy.analysis.batching import DEFAULT_TOLERANT_TAGS
    from proxy.analysis.hardware import GPUS, OPEN_MODELS
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

    selfhost = ledger_command(commands, "selfhost", "the self-hosting break-even for the recorded workload",
                              since="30d")
    model = selfhost.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", choices=sorted(OPEN_MODELS), help="an open model whose size is known")
    model.add_argument("--params", type=_positive_float, help="parameters of the model (70e9)")
    selfhost.add_argument("--kv-bytes-per-token", type=int,
                          help="KV cache per token of context (2 x layers x KV heads x head dim x 2 bytes)")
    selfhost.add_argument("--bytes-per-param", type=_positive_float, default=2.0, help="2 for 16-bit (default)")
    selfhost.add_argument("--gpu", required=True, choices=sorted(GPUS))
    selfhost.add_argument("--gpus", type=int, default=1, help="GPUs the model is split across (default 1)")
    selfhost.add_argument("--gpu-hour-usd", type=_positive_float, required=True, help="price of one GPU-hour")
    selfhost.add_argument("--mfu", type=_fraction, help="achievable share of the GPU's FLOPS (default 0.64)")
    selfhost.add_argument("--bandwidth-utilisation", type=_fraction,
                          help="achievable share of its memory bandwidth (default 0.65)")
    selfhost.add_argument("--usable-memory", type=_fraction, help="share of GPU memory for weights and KV (0.95)")
    speed = selfhost.add_mutually_exclusive_group()
    speed.add_argument("--batch", type=int, help="sequences decoded together (default: as many as fit)")
    speed.add_argument("--target-tokens-per-second", type=_positive_float,
                       help="a latency target: each sequence gets at least this many output tokens a second")
    selfhost.add_argument("--context-tokens", type=int, help="KV cache length a sequence decodes with (default: "
                                                              "the traffic's mean prompt + half its mean output)")
    selfhost.add_argument("--prompt-tokens", type=int, help="mean prompt length (default: the traffic's)")
    selfhost.add_argument("--vs", metavar="MODEL", help="compare per-token prices with this API model")
    selfhost.add_argument("--by", default="model", choices=("model", "team", "requested_model", "endpoint", "key"))
    selfhost.add_argument("--explain", action="store_true", help="print every formula with its numbers")
    selfhost.add_argument("--format", choices=FORMATS, default="table")
    selfhost.set_defaults(run=_selfhost)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text}")
    return value


class _Failure(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _run(body: Callable[[], str]) -> int:
    from proxy.accounting.pricing import PricingError
    from proxy.analysis.selfhost import SelfHostError
    from proxy.analysis.whatif import WhatIfError
    from proxy.config import ConfigError

    try:
        print(body())
    except _Failure as exc:
        print(f"thriftgate: {exc}", file=sys.stderr)
        return exc.code
    except (WhatIfError, SelfHostError, PricingError, ConfigError) as exc:
        print(f"thriftgate: {exc}", file=sys.stderr)
        return 2
    return 0


def _window(args: argparse.Namespace) -> tuple[float, float]:
    from proxy.accounting.ledger import parse_since

    now = time.time()
    try:
        return parse_since(args.since, now), now
    except ValueError as exc:
        raise _Failure(f"--since: {exc}") from None


def _ledger(args: argparse.Namespace, config) -> Path:
    return Path(args.ledger or config.ledger.path)


def _format(args: argparse.Namespace) -> str:
    return "json" if args.json else args.format


def _whatif(args: argparse.Namespace) -> int:
    return _run(lambda: whatif_text(args))


def whatif_text(args: argparse.Namespace) -> str:
    from proxy import config_loading
    from proxy.analysis.batching import batch_whatif
    from proxy.analysis.records import spend_rows
    from proxy.analysis.whatif import check, whatif

    config = config_loading.load(args.config)
    current = config_loading.price_table(config)
    since, until = _window(args)
    scenario = scenario_from_args(args)
    check(scenario, current)  # bad input is refused before anything is read
    path = _ledger(args, config)
    if not path.is_file():
        raise _Failure(f"no ledger at {path}", code=1)
    rows = lambda: spend_rows(path, since, until)  # noqa: E731 (read twice when policies need measuring)
    if args.batch:
        tags = [tag.strip() for tag in args.latency_tolerant_tags.split(",") if tag.strip()]
        report = batch_whatif(rows(), current, by=args.by, tolerant_tags=tags, since=since, until=until)
        text = render.render(report, render.BATCH_COLUMNS, _format(args))
        return text if _format(args) != "table" else f"{text}\n{report['basis']}"
    report = whatif(rows, scenario, current, by=args.by, since=since, until=until)
    text = render.render(report, render.WHATIF_COLUMNS, _format(args))
    return text if _format(args) != "table" else f"{text}\n{render.bases_legend(report['total'])}"


def scenario_from_args(args: argparse.Namespace):
    from proxy.accounting.pricing import PriceTable
    from proxy.analysis.whatif import Scenario

    model_map = {}
    for pair in args.model:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise _Failure(f"--model {pair}: expected FROM=TO, e.g. gpt-4o=gpt-4o-mini")
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


def _selfhost(args: argparse.Namespace) -> int:
    return _run(lambda: selfhost_text(args))


def selfhost_text(args: argparse.Namespace) -> str:
    import json

    from proxy import config_loading
    from proxy.analysis import selfhost
    from proxy.analysis.hardware import GPUS, OPEN_MODELS
    from proxy.analysis.records import spend_rows

    config = config_loading.load(args.config)
    prices = config_loading.price_table(config)
    since, until = _window(args)
    preset = OPEN_MODELS.get(args.model) if args.model else None
    kv = args.kv_bytes_per_token if args.kv_bytes_per_token is not None else (preset.kv_bytes_per_token if preset else None)
    if kv is None:
        raise _Failure("--params needs --kv-bytes-per-token (2 x layers x KV heads x head dim x 2 bytes, "
                       "from the model's config.json), or use --model with a known open model")
    if args.gpus < 1:
        raise _Failure("--gpus: expected 1 or more")
    defaults = {name: value for name, value in (("mfu", args.mfu), ("bandwidth_utilisation", args.bandwidth_utilisation),
                                                ("usable_memory", args.usable_memory)) if value is not None}
    deployment = selfhost.Deployment(
        model=preset.name if preset else f"a {args.params:.3g}-parameter model",
        parameters=preset.parameters if preset else args.params, kv_bytes_per_token=kv, gpu=GPUS[args.gpu],
        gpus=args.gpus, gpu_hour_usd=args.gpu_hour_usd, bytes_per_parameter=args.bytes_per_param, **defaults)
    path = _ledger(args, config)
    recorded = path.is_file()
    rows = (lambda: spend_rows(path, since, until)) if recorded else (lambda: iter(()))  # noqa: E731 (read twice)
    prompt, context = _lengths(rows(), args)
    sizing = selfhost.size(deployment, context_tokens=context, prompt_tokens=prompt, batch=args.batch,
                           target_tokens_per_second=args.target_tokens_per_second)
    report = selfhost.sizing_dict(deployment, sizing) | {"ledger": str(path) if recorded else None}
    if args.vs:
        report["versus"] = _versus(args.vs, prices, sizing)
    report |= selfhost.compare(rows(), sizing, deployment, prices, by=args.by, window_seconds=until - since)
    if args.explain:
        report["explain"] = selfhost.explain(deployment, sizing)
    fmt = _format(args)
    if fmt == "json":
        return json.dumps(report, indent=2)
    table = render.render(report, render.SELFHOST_COLUMNS, fmt)
    if fmt == "csv":
        return table
    return "\n".join([*_selfhost_head(report, deployment, sizing), table, *_selfhost_tail(report)])


def _lengths(rows, args: argparse.Namespace) -> tuple[int, int]:
    """Mean prompt length, and the mean KV length a sequence decodes with (its prompt and half its output)."""
    from proxy.analysis.selfhost import GENERATING_ENDPOINTS

    count = prompts = outputs = 0
    for row in rows:
        if row["endpoint"] in GENERATING_ENDPOINTS and row["completion_tokens"]:
            count, prompts, outputs = count + 1, prompts + row["prompt_tokens"], outputs + row["completion_tokens"]
    mean_prompt = round(prompts / count) if count else 1024
    mean_output = round(outputs / count) if count else 512
    prompt = args.prompt_tokens or max(mean_prompt, 1)
    context = args.context_tokens or max(prompt + mean_output // 2, 1)
    return prompt, context


def _versus(model: str, prices, sizing) -> dict:
    from proxy.analysis.selfhost import break_even

    price = prices.lookup(model)
    if price is None:
        raise _Failure(f"--vs {model}: unknown model (no price for it in the price table in use)")
    api_prompt, api_output = float(price.input), float(price.output)
    return {"model": model, "prompt_usd_per_million": api_prompt, "output_usd_per_million": api_output,
            "break_even": break_even(api_prompt, api_output, sizing.prompt_usd_per_million,
                                     sizing.output_usd_per_million)}


def _selfhost_head(report: dict, d, s) -> list[str]:
    lines = [f"{d.model} on {d.gpus} x {d.gpu.name} at ${d.gpu_hour_usd:g}/GPU-hour: batch {s.batch} "
             f"(at most {s.max_batch} fit at {s.context_tokens:,} tokens of context), "
             f"{s.sequence_tokens_per_second:.1f} output tokens/s per sequence",
             f"self-hosted: ${s.prompt_usd_per_million:.4f} per 1M prompt tokens, "
             f"${s.output_usd_per_million:.4f} per 1M output tokens (at full load)"]
    versus = report.get("versus")
    if versus:
        verdict = versus["break_even"]
        ratio = "" if verdict["ratio"] is None else f" {verdict['ratio']:.2f} prompt tokens per output token"
        lines.append(f"{versus['model']}: ${versus['prompt_usd_per_million']:g} / ${versus['output_usd_per_million']:g}"
                     f" per 1M prompt / output tokens; self-hosting is cheaper {verdict['self_hosting_cheaper']}{ratio}")
    return lines


def _selfhost_tail(report: dict) -> list[str]:
    rented = report["rented"]
    lines = [f"rented for the whole window ({rented['window_hours']:,.1f} h): {rented['replicas']} replica(s) busy "
             f"{rented['busy_hours']:,.2f} h = ${rented['usd']:,.2f}"
             + (f" ({rented['utilisation']:.1%} utilised)" if rented["utilisation"] is not None else "")]
    if not report["total"]["requests"]:
        lines.append("no recorded generation traffic in the window: per-token figures only")
    if "explain" in report:
        lines += ["", "formulas:", *(f"  {line}" for line in report["explain"])]
    return lines


def language_report(args: argparse.Namespace) -> int:
    """`thriftgate spend --by language`: tokens per word by language and model family, from the ledger."""
    return _run(lambda: _language_text(args))


def _language_text(args: argparse.Namespace) -> str:
    import json

    from proxy import config_loading
    from proxy.accounting.money import format_usd
    from proxy.accounting.reports import render_table
    from proxy.analysis.records import spend_rows
    from proxy.analysis.words import tokens_per_word

    since, until = _window(args)
    path = _ledger(args, config_loading.load(args.config))
    if not path.is_file():
        raise _Failure(f"no ledger at {path}", code=1)
    rows = tokens_per_word(spend_rows(path, since, until))
    if args.json:
        return json.dumps(rows, indent=2)
    if not rows:
        return "no whole text answers with counted words in this window"
    header = ("language", "family", "answers", "words", "output_tok", "tokens/word", "vs_english", "cost_usd")
    return render_table(header, [
        (r["language"], r["family"], str(r["answers"]), str(r["words"]), str(r["output_tokens"]),
         f"{r['tokens_per_word']:.2f}", "-" if r["vs_english"] is None else f"{r['vs_english']:.2f}x",
         format_usd(r["cost_nanos"])) for r in rows])
