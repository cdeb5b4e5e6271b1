"""`thriftgate selfhost`: what the recorded workload would cost on rented GPUs running an open model.

The arithmetic (docs/whatif.md states it with every symbol; `--explain` prints it with the numbers):
- prompt tokens are compute-bound: each costs ~2 x P FLOPs (P parameters; attention is left out), so a
  deployment of G GPUs processes G x FLOPS x MFU / 2P prompt tokens a second, unless a batch of prompts is
  so short that reading the weights once takes longer (B x L tokens per weight read);
- output tokens are memory-bandwidth-bound: every decoding step reads all the weights (P x bytes) and the
  KV cache of every sequence in the batch (B x N x kv bytes per token), and yields B tokens;
- a GPU-hour costs the same busy or idle, so a token costs (GPUs x price per GPU-second) / tokens a second.
Checked against Aman Sanger's "Why GPT-3.5 is (mostly) cheaper than Llama 2" (Cursor, 2023-07-20,
https://cursor.com/blog/llama-inference): tests/analysis/test_selfhost.py.
"""

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from proxy.accounting.money import NANOS_PER_USD
from proxy.accounting.pricing import PriceTable
from proxy.accounting.usage import Usage
from proxy.analysis.hardware import Gpu
from proxy.analysis.records import is_request, usage_of

GB = 1e9
# Achievable fractions of the datasheet figures; Sanger's example: "a bit under 70% MFU ... around 200
# TFLOPs" of an A100's 312 (0.64) and "60-70%" of its memory bandwidth (0.65).
DEFAULT_MFU = 0.64
DEFAULT_BANDWIDTH_UTILISATION = 0.65
# What is left of GPU memory for weights and KV cache after the CUDA context, activations and fragmentation.
DEFAULT_USABLE_MEMORY = 0.95
GENERATING_ENDPOINTS = frozenset({"chat", "completions", "responses", "messages"})


class SelfHostError(ValueError):
    """An input that cannot work (a model that does not fit, a latency no batch reaches); says why with numbers."""


@dataclass(frozen=True, slots=True)
class Deployment:
    model: str
    parameters: float
    kv_bytes_per_token: int
    gpu: Gpu
    gpus: int
    gpu_hour_usd: float
    mfu: float = DEFAULT_MFU
    bandwidth_utilisation: float = DEFAULT_BANDWIDTH_UTILISATION
    bytes_per_parameter: float = 2.0
    usable_memory: float = DEFAULT_USABLE_MEMORY

    @property
    def weights_bytes(self) -> float:
        return self.parameters * self.bytes_per_parameter

    @property
    def memory_bytes(self) -> float:
        return self.gpus * self.gpu.memory_gb * GB

    @property
    def flops(self) -> float:
        """Achieved FLOP/s of the whole deployment."""
        return self.gpus * self.gpu.tflops_16bit * 1e12 * self.mfu

    @property
    def bandwidth(self) -> float:
        """Achieved bytes/s of the whole deployment."""
        return self.gpus * self.gpu.bandwidth_gb_s * GB * self.bandwidth_utilisation

    @property
    def usd_per_second(self) -> float:
        return self.gpus * self.gpu_hour_usd / 3600


@dataclass(frozen=True, slots=True)
class Sizing:
    batch: int
    max_batch: int
    context_tokens: int  # N: tokens in each sequence's KV cache while it decodes (on average)
    prompt_tokens: int  # L: tokens of an average prompt
    prompt_tokens_per_second: float
    step_seconds: float  # one decoding step of the whole batch
    output_tokens_per_second: float  # the batch's
    sequence_tokens_per_second: float  # one sequence's: what its user sees
    prompt_usd_per_million: float
    output_usd_per_million: float


def max_batch(d: Deployment, context_tokens: int) -> int:
    """The most sequences whose KV caches fit beside the weights; raises SelfHostError when not even one does."""
    usable = d.usable_memory * d.memory_bytes
    per_sequence = context_tokens * d.kv_bytes_per_token
    room = usable - d.weights_bytes
    if room < per_sequence:
        raise SelfHostError(
            f"{d.model} does not fit: its weights take {d.weights_bytes / GB:,.1f} GB ({d.parameters:.3g} parameters x "
            f"{d.bytes_per_parameter:g} bytes) and one sequence of {context_tokens:,} tokens needs "
            f"{per_sequence / GB:,.2f} GB of KV cache ({d.kv_bytes_per_token:,} bytes a token), but {d.gpus} x "
            f"{d.gpu.name} have {d.memory_bytes / GB:,.0f} GB, {usable / GB:,.1f} GB of it usable "
            f"({d.usable_memory:.0%}): use more or bigger GPUs, or fewer bytes per parameter")
    return int(room // per_sequence) if per_sequence else 1 << 20


def step_seconds(d: Deployment, batch: int, context_tokens: int) -> float:
    """One decoding step: read the weights and every sequence's KV cache, or do 2P FLOPs a sequence,
    whichever takes longer."""
    memory = (d.weights_bytes + batch * context_tokens * d.kv_bytes_per_token) / d.bandwidth
    compute = 2 * d.parameters * batch / d.flops
    return max(memory, compute)


def batch_for_speed(d: Deployment, tokens_per_second: float, context_tokens: int, ceiling: int) -> int:
    """The largest batch whose every sequence still gets `tokens_per_second` (a latency target)."""
    budget = 1 / tokens_per_second  # seconds a step may take
    by_memory = (budget * d.bandwidth - d.weights_bytes) / max(context_tokens * d.kv_bytes_per_token, 1)
    by_compute = budget * d.flops / (2 * d.parameters)
    batch = min(int(by_memory), int(by_compute), ceiling)
    if batch < 1:
        best = 1 / step_seconds(d, 1, context_tokens)
        raise SelfHostError(f"{d.gpus} x {d.gpu.name} cannot give a sequence of {d.model} {tokens_per_second:g} "
                            f"tokens a second: at batch 1 it gets {best:.1f}")
    return batch


def size(d: Deployment, *, context_tokens: int, prompt_tokens: int, batch: int | None = None,
         target_tokens_per_second: float | None = None) -> Sizing:
    ceiling = max_batch(d, context_tokens)
    if batch is None:
        batch = batch_for_speed(d, target_tokens_per_second, context_tokens, ceiling) if target_tokens_per_second \
            else ceiling
    elif batch > ceiling:
        raise SelfHostError(
            f"batch {batch} does not fit: {batch} sequences of {context_tokens:,} tokens need "
            f"{batch * context_tokens * d.kv_bytes_per_token / GB:,.1f} GB of KV cache beside "
            f"{d.weights_bytes / GB:,.1f} GB of weights, in {d.usable_memory * d.memory_bytes / GB:,.1f} GB usable "
            f"on {d.gpus} x {d.gpu.name}; at most {ceiling} fit")
    step = step_seconds(d, batch, context_tokens)
    # A prefill of the batch's prompts reads the weights once for all their tokens, so it is compute-bound
    # unless the prompts are very short.
    prefill_tokens = max(batch * prompt_tokens, 1)
    prompt_rate = prefill_tokens / max(2 * d.parameters * prefill_tokens / d.flops, d.weights_bytes / d.bandwidth)
    output_rate = batch / step
    return Sizing(
        batch=batch, max_batch=ceiling, context_tokens=context_tokens, prompt_tokens=prompt_tokens,
        prompt_tokens_per_second=prompt_rate, step_seconds=step, output_tokens_per_second=output_rate,
        sequence_tokens_per_second=1 / step,
        prompt_usd_per_million=d.usd_per_second / prompt_rate * 1e6,
        output_usd_per_million=d.usd_per_second / output_rate * 1e6,
    )


def break_even(api_prompt: float, api_output: float, own_prompt: float, own_output: float) -> dict:
    """Where self-hosting starts to win, as prompt tokens per output token (USD per 1M tokens in).

    Self-hosting costs (own_p - api_p) x prompt + (own_o - api_o) x output more than the API; with
    r = prompt / output it is cheaper when (own_p - api_p) r + (own_o - api_o) < 0."""
    prompt_gap, output_gap = own_prompt - api_prompt, own_output - api_output
    if prompt_gap < 0 and output_gap <= 0:
        return {"self_hosting_cheaper": "always", "ratio": None}
    if prompt_gap >= 0 and output_gap >= 0:
        return {"self_hosting_cheaper": "never", "ratio": None}
    ratio = -output_gap / prompt_gap
    return {"self_hosting_cheaper": "above" if prompt_gap < 0 else "below", "ratio": ratio}


@dataclass(slots=True)
class _Group:
    requests: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    api_nanos: int = 0  # what was paid
    api_prompt_nanos: int = 0  # the same tokens repriced, prompt part (for the group's effective rates)
    api_output_nanos: int = 0
    unpriced: int = 0


def compare(rows: Iterable[dict], sizing: Sizing, d: Deployment, prices: PriceTable, *, by: str,
            window_seconds: float) -> dict:
    """The recorded generation traffic: what it cost on the API against what it would cost self-hosted,
    per group (by model, team, ...) and in all."""
    groups: dict[str, _Group] = {}
    total = _Group()
    for row in rows:
        if row["endpoint"] not in GENERATING_ENDPOINTS or not (row["prompt_tokens"] or row["completion_tokens"]):
            continue
        for group in (groups.setdefault(str(row.get(by) or "-"), _Group()), total):
            _add(group, row, prices)
    out = [_summary(name, group, sizing) for name, group in sorted(groups.items(), key=lambda kv: -kv[1].api_nanos)]
    busy = (total.prompt_tokens / sizing.prompt_tokens_per_second
            + total.output_tokens / sizing.output_tokens_per_second)
    replicas = max(1, math.ceil(busy / window_seconds)) if window_seconds > 0 else 1
    rented_usd = replicas * d.usd_per_second * window_seconds
    return {
        "by": by, "groups": out, "total": _summary("TOTAL", total, sizing),
        "rented": {"window_hours": window_seconds / 3600, "busy_hours": busy / 3600, "replicas": replicas,
                   "utilisation": busy / (replicas * window_seconds) if window_seconds > 0 else None,
                   "usd": rented_usd},
    }


def _add(group: _Group, row: dict, prices: PriceTable) -> None:
    """A request's row, or a billed failed attempt's: its tokens and dollars count, not as a request."""
    counted = int(is_request(row))
    if row["cost_nanos"] is None:  # no API cost to set against: counted, kept out of both sides and the rates
        group.unpriced += counted
        return
    group.requests += counted
    group.prompt_tokens += row["prompt_tokens"]
    group.output_tokens += row["completion_tokens"]
    group.api_nanos += row["cost_nanos"]
    usage = usage_of(row)
    prompt_part = dataclasses.replace(usage, completion_tokens=0, reasoning_tokens=0)
    group.api_prompt_nanos += prices.cost_nanos(row["model"], prompt_part) or 0
    output_part = Usage(completion_tokens=usage.completion_tokens, reasoning_tokens=usage.reasoning_tokens)
    group.api_output_nanos += prices.cost_nanos(row["model"], output_part) or 0


def _summary(name: str, group: _Group, sizing: Sizing) -> dict:
    own = (group.prompt_tokens * sizing.prompt_usd_per_million + group.output_tokens * sizing.output_usd_per_million) / 1e6
    api = group.api_nanos / NANOS_PER_USD
    summary = {
        "group": name, "requests": group.requests, "unpriced_requests": group.unpriced,
        "prompt_tokens": group.prompt_tokens, "output_tokens": group.output_tokens,
        "prompt_to_output": group.prompt_tokens / group.output_tokens if group.output_tokens else None,
        "api_usd": api, "self_hosted_usd": own, "difference_usd": own - api, "break_even": None,
    }
    if group.prompt_tokens and group.output_tokens:
        api_prompt = group.api_prompt_nanos / NANOS_PER_USD / group.prompt_tokens * 1e6
        api_output = group.api_output_nanos / NANOS_PER_USD / group.output_tokens * 1e6
        summary["break_even"] = break_even(api_prompt, api_output, sizing.prompt_usd_per_million,
                                           sizing.output_usd_per_million)
    return summary


def explain(d: Deployment, s: Sizing) -> list[str]:
    """Every formula, with its numbers."""
    p, g = d.parameters, d.gpu
    kv = s.batch * s.context_tokens * d.kv_bytes_per_token
    return [
        f"deployment: {d.gpus} x {g.name} ({g.memory_gb:g} GB, {g.bandwidth_gb_s:g} GB/s, {g.tflops_16bit:g} dense "
        f"16-bit TFLOPS each; source: {g.source}) at ${d.gpu_hour_usd:g} per GPU-hour = ${d.usd_per_second:.6f}/s",
        f"weights W = P x bytes = {p:.4g} x {d.bytes_per_parameter:g} = {d.weights_bytes / GB:,.1f} GB",
        f"KV cache per token k = {d.kv_bytes_per_token:,} bytes; per sequence of N = {s.context_tokens:,} tokens: "
        f"{s.context_tokens * d.kv_bytes_per_token / GB:,.3f} GB",
        f"fits: W + B x N x k <= usable memory: {d.weights_bytes / GB:,.1f} + {kv / GB:,.2f} <= "
        f"{d.usable_memory:g} x {d.memory_bytes / GB:,.0f} GB; largest batch = floor((usable - W) / (N x k)) = "
        f"{s.max_batch}",
        f"achieved compute F = GPUs x TFLOPS x MFU = {d.gpus} x {g.tflops_16bit:g}e12 x {d.mfu:g} = {d.flops:.4g} FLOP/s",
        f"achieved bandwidth M = GPUs x GB/s x utilisation = {d.gpus} x {g.bandwidth_gb_s:g}e9 x "
        f"{d.bandwidth_utilisation:g} = {d.bandwidth:.4g} B/s",
        f"prompt tokens/s = B x L / max(2P x B x L / F, W / M) = {s.prompt_tokens_per_second:,.1f} (L = "
        f"{s.prompt_tokens:,} prompt tokens; 2P = {2 * p:.4g} FLOPs a token: compute-bound)",
        f"decoding step t = max((W + B x N x k) / M, 2P x B / F) = max({(d.weights_bytes + kv) / d.bandwidth:.5f}, "
        f"{2 * p * s.batch / d.flops:.5f}) = {s.step_seconds:.5f} s at batch B = {s.batch}",
        f"output tokens/s = B / t = {s.output_tokens_per_second:,.1f} ({s.sequence_tokens_per_second:.1f} per sequence)",
        f"$ per 1M prompt tokens = $/s / prompt tokens/s x 1e6 = {s.prompt_usd_per_million:.4f}",
        f"$ per 1M output tokens = $/s / output tokens/s x 1e6 = {s.output_usd_per_million:.4f}",
        "break-even: self-hosting is cheaper when (own_p - api_p) x r + (own_o - api_o) < 0, r = prompt/output tokens",
        "rented: a GPU-hour is paid busy or idle: replicas = ceil(busy hours / window hours), cost = replicas x "
        "GPUs x $/GPU-hour x window hours",
    ]


def sizing_dict(d: Deployment, s: Sizing) -> dict:
    deployment = {k: v for k, v in asdict(d).items() if k != "gpu"} | {"gpu": asdict(d.gpu)}
    return {"deployment": deployment, "sizing": asdict(s)}
