"""The analysis reports as a terminal table, CSV or JSON: one set of columns per report, shared by all three."""

import csv
import io
import json
from collections.abc import Callable, Sequence

from proxy.accounting.money import format_usd
from proxy.accounting.reports import render_table

Column = tuple[str, Callable[[dict], object]]  # heading, value of a summary row


def _usd(key: str) -> Callable[[dict], str]:
    return lambda row: format_usd(row[key])


def _share(key: str) -> Callable[[dict], str]:
    return lambda row: f"{row[key]:.1%}"


def _basis(row: dict) -> str:
    kinds = {basis.partition(":")[0] for basis in row["bases"]}
    parts = sorted(kinds - {"not estimable"})
    if row["not_estimable_requests"]:
        parts.append(f"{row['not_estimable_requests']} not estimable")
    return ", ".join(parts) or "-"


WHATIF_COLUMNS: Sequence[Column] = (
    ("requests", lambda r: r["requests"]), ("affected", lambda r: r["affected_requests"]),
    ("share", _share("affected_share")), ("actual_usd", _usd("actual_nanos")), ("whatif_usd", _usd("whatif_nanos")),
    ("difference_usd", _usd("difference_nanos")), ("basis", _basis),
)
BATCH_COLUMNS: Sequence[Column] = (
    ("requests", lambda r: r["requests"]), ("non_streamed", lambda r: r["eligible_requests"]),
    ("tolerant", lambda r: r["tolerant_requests"]), ("share", _share("tolerant_share")),
    ("tolerant_usd", _usd("tolerant_actual_nanos")), ("at_batch_usd", _usd("tolerant_batch_nanos")),
    ("saving_usd", _usd("tolerant_saving_nanos")), ("upper_bound_saving_usd", _usd("eligible_saving_nanos")),
    ("no_batch_price", lambda r: r["no_batch_price_requests"]),
)


def _dollars(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _break_even(row: dict) -> str:
    verdict = row["break_even"]
    if verdict is None:
        return "-"
    if verdict["ratio"] is None:
        return verdict["self_hosting_cheaper"]
    return f"{verdict['self_hosting_cheaper']} {verdict['ratio']:.2f}:1"


SELFHOST_COLUMNS: Sequence[Column] = (
    ("requests", lambda r: r["requests"]), ("prompt_tok", lambda r: r["prompt_tokens"]),
    ("output_tok", lambda r: r["output_tokens"]),
    ("prompt:output", lambda r: "-" if r["prompt_to_output"] is None else f"{r['prompt_to_output']:.2f}:1"),
    ("api_usd", lambda r: _dollars(r["api_usd"])), ("self_hosted_usd", lambda r: _dollars(r["self_hosted_usd"])),
    ("self_hosting_cheaper", _break_even), ("unpriced", lambda r: r["unpriced_requests"]),
)


def render(report: dict, columns: Sequence[Column], fmt: str) -> str:
    """`report` has "by", "groups" and "total"; fmt is table, csv or json."""
    if fmt == "json":
        return json.dumps(report, indent=2)
    header = (report["by"], *(name for name, _ in columns))
    lines = [(row["group"], *(str(value(row)) for _, value in columns)) for row in (*report["groups"], report["total"])]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(lines)
        return out.getvalue().rstrip("\n")
    return render_table(header, lines)


def bases_legend(total: dict) -> str:
    """Every basis behind the figures, with how many requests it covers."""
    if not total["bases"]:
        return "basis: nothing in the scenario touches these requests; what-if = actual"
    return "bases:\n" + "\n".join(f"  {count:>8}  {basis}" for basis, count in total["bases"].items())
