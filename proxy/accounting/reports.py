"""Terminal tables for `thriftgate spend` and `thriftgate savings`."""

from collections.abc import Sequence

from proxy.accounting.money import format_usd


def render_table(header: Sequence[str], lines: list[Sequence[str]]) -> str:
    rows = [tuple(header), *lines]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    )


def spend_table(by: str, rows: list[dict]) -> str:
    """Input split three ways, for every provider: uncached, read from the prompt cache, written to it."""
    header = (by, "requests", "input_tok", "uncached_in", "cache_read", "cache_write", "output_tok", "cost_usd",
              "unpriced")
    lines = [
        (str(r[by] if r[by] is not None else "-"), str(r["requests"]), str(r["prompt_tokens"]),
         str(r["prompt_tokens"] - r["cached_prompt_tokens"] - r["cache_write_tokens"]),
         str(r["cached_prompt_tokens"]), str(r["cache_write_tokens"]), str(r["completion_tokens"]),
         format_usd(r["cost_nanos"]), str(r["unpriced_requests"]))
        for r in rows
    ]
    total = sum(r["cost_nanos"] for r in rows)
    lines.append(("TOTAL", str(sum(r["requests"] for r in rows)), "", "", "", "", "", format_usd(total), ""))
    return render_table(header, lines)


def savings_table(report: list[dict]) -> str:
    header = ("policy", "mechanism", "treated", "held_out", "tokens_t/h", "cost/req_t/h", "saving/req (95% CI)",
              "saved_exact", "shadow_would_save", "projected/month")
    lines = [
        (r["policy"], r["mechanism"] or "-", str(r["treated_requests"]), str(r["held_out_requests"]),
         f"{_num(r['treated_mean_completion_tokens'])}/{_num(r['held_out_mean_completion_tokens'])}",
         f"{_usd(r['treated_mean_cost_nanos'])}/{_usd(r['held_out_mean_cost_nanos'])}",
         _with_interval(r["saving_per_request_nanos"], r["saving_ci95_nanos"]),
         format_usd(r["counterfactual_saved_nanos"]), format_usd(r["shadow_would_save_nanos"]),
         format_usd(r["projected_monthly_saving_nanos"]))
        for r in report
    ]
    return render_table(header, lines) if lines else "no policy has touched a request in this window"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _usd(nanos: float | None) -> str:
    return "-" if nanos is None else format_usd(round(nanos))


def _with_interval(value: float | None, interval: tuple[float, float] | None) -> str:
    if value is None or interval is None:
        return "- (needs held-out traffic)"
    return f"{_usd(value)} [{_usd(interval[0])}, {_usd(interval[1])}]"
