"""`thriftgate selfhost`: the recorded workload against the same work on rented GPUs (proxy/analysis/selfhost.py)."""

import argparse
import contextlib
from collections.abc import Callable
from pathlib import Path

from proxy.analysis import render
from proxy.analysis.cli_common import FORMATS, Failure, fraction, ledger_reader, output_format, positive_float, run, window


def add_command(commands: argparse._SubParsersAction, ledger_command: Callable) -> None:
    from proxy.analysis.hardware import GPUS, OPEN_MODELS

    selfhost = ledger_command(commands, "selfhost", "the self-hosting break-even for the recorded workload",
                              since="30d")
    model = selfhost.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", choices=sorted(OPEN_MODELS), help="an open model whose size is known")
    model.add_argument("--params", type=positive_float, help="parameters of the model (70e9)")
    selfhost.add_argument("--kv-bytes-per-token", type=int,
                          help="KV cache per token of context (2 x layers x KV heads x head dim x 2 bytes)")
    selfhost.add_argument("--bytes-per-param", type=positive_float, default=2.0, help="2 for 16-bit (default)")
    selfhost.add_argument("--gpu", required=True, choices=sorted(GPUS))
    selfhost.add_argument("--gpus", type=int, default=1, help="GPUs the model is split across (default 1)")
    selfhost.add_argument("--gpu-hour-usd", type=positive_float, required=True, help="price of one GPU-hour")
    selfhost.add_argument("--mfu", type=fraction, help="achievable share of the GPU's FLOPS (default 0.64)")
    selfhost.add_argument("--bandwidth-utilisation", type=fraction,
                          help="achievable share of its memory bandwidth (default 0.65)")
    selfhost.add_argument("--usable-memory", type=fraction, help="share of GPU memory for weights and KV (0.95)")
    speed = selfhost.add_mutually_exclusive_group()
    speed.add_argument("--batch", type=int, help="sequences decoded together (default: as many as fit)")
    speed.add_argument("--target-tokens-per-second", type=positive_float,
                       help="a latency target: each sequence gets at least this many output tokens a second")
    selfhost.add_argument("--context-tokens", type=int, help="KV cache length a sequence decodes with (default: "
                                                              "the traffic's mean prompt + half its mean output)")
    selfhost.add_argument("--prompt-tokens", type=int, help="mean prompt length (default: the traffic's)")
    selfhost.add_argument("--vs", metavar="MODEL", help="compare per-token prices with this API model")
    selfhost.add_argument("--by", default="model", choices=("model", "team", "requested_model", "endpoint", "key"))
    selfhost.add_argument("--explain", action="store_true", help="print every formula with its numbers")
    selfhost.add_argument("--format", choices=FORMATS, default="table")
    selfhost.set_defaults(run=_selfhost)


def _selfhost(args: argparse.Namespace) -> int:
    return run(lambda: selfhost_text(args))


def selfhost_text(args: argparse.Namespace) -> str:
    from proxy import config_loading
    from proxy.analysis import selfhost
    from proxy.analysis.hardware import GPUS, OPEN_MODELS

    config = config_loading.load(args.config)
    prices = config_loading.price_table(config)
    since, until = window(args)
    preset = OPEN_MODELS.get(args.model) if args.model else None
    kv = args.kv_bytes_per_token if args.kv_bytes_per_token is not None else (preset.kv_bytes_per_token if preset else None)
    if kv is None:
        raise Failure("--params needs --kv-bytes-per-token (2 x layers x KV heads x head dim x 2 bytes, "
                       "from the model's config.json), or use --model with a known open model")
    if args.gpus < 1:
        raise Failure("--gpus: expected 1 or more")
    defaults = {name: value for name, value in (("mfu", args.mfu), ("bandwidth_utilisation", args.bandwidth_utilisation),
                                                ("usable_memory", args.usable_memory)) if value is not None}
    deployment = selfhost.Deployment(
        model=preset.name if preset else f"a {args.params:.3g}-parameter model",
        parameters=preset.parameters if preset else args.params, kv_bytes_per_token=kv, gpu=GPUS[args.gpu],
        gpus=args.gpus, gpu_hour_usd=args.gpu_hour_usd, bytes_per_parameter=args.bytes_per_param, **defaults)
    try:
        reader = ledger_reader(args, config)
    except Failure:
        if config.ledger.backend == "postgres" and not args.ledger or Path(args.ledger or config.ledger.path).exists():
            raise  # the fleet's database is down, or a file this version cannot read: said, not taken for no workload
        reader = None  # no ledger file (yet): the sizing alone
    with reader or contextlib.nullcontext():
        return _selfhost_report(args, config, prices, since, until, deployment, reader)


def _selfhost_report(args, config, prices, since: float, until: float, deployment, reader) -> str:
    import json

    from proxy.analysis import selfhost
    from proxy.analysis.records import spend_rows
    from proxy.control.config import masked_dsn

    rows = (lambda: spend_rows(reader, since, until)) if reader else (lambda: iter(()))  # noqa: E731 (read twice)
    source = args.ledger or (config.ledger.path if config.ledger.backend == "sqlite" else masked_dsn(config.ledger.dsn))
    prompt, context = _lengths(rows(), args)
    sizing = selfhost.size(deployment, context_tokens=context, prompt_tokens=prompt, batch=args.batch,
                           target_tokens_per_second=args.target_tokens_per_second)
    report = selfhost.sizing_dict(deployment, sizing) | {"ledger": source if reader else None}
    if args.vs:
        report["versus"] = _versus(args.vs, prices, sizing)
    report |= selfhost.compare(rows(), sizing, deployment, prices, by=args.by, window_seconds=until - since)
    if args.explain:
        report["explain"] = selfhost.explain(deployment, sizing)
    fmt = output_format(args)
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
        raise Failure(f"--vs {model}: unknown model (no price for it in the price table in use)")
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
