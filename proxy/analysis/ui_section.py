"""The "What if" section of /ui: a form (a plain GET, no script) and, when asked, this month's traffic repriced
under another model (`?whatif=gpt-4o=gpt-4o-mini`) and what a Batch API would have saved (`?batch=1`)."""

import html
from collections.abc import Callable, Iterable

from aiohttp import web

from proxy.analysis.admin import model_pairs, report
from proxy.errors import ProxyError

_WHATIF_HEADINGS = ("Model", "Requests", "Affected", "Actual", "What if", "Difference", "Basis")
_BATCH_HEADINGS = ("Model", "Requests", "Non-streamed", "Latency-tolerant", "Actual", "At batch price", "Saving",
                   "Saving if all non-streamed")


Table = Callable[[str, Iterable[str], Iterable[str], str], str]  # (id, headings, rows of cells, empty) -> HTML
Usd = Callable[[int], str]


async def whatif_section(request: web.Request, since_month: float, *, table: Table, usd: Usd) -> str:
    """The section's HTML, in the page's own tables and money format (handed in by control/ui.py)."""
    asked = request.query.get("whatif", "").strip()
    batch = request.query.get("batch") == "1"
    parts = [_FORM.format(value=html.escape(asked, quote=True), checked=" checked" if batch else "")]
    try:
        if asked:
            model_map = model_pairs([pair for pair in asked.split(",") if pair.strip()])
            result = await report(request, {"model_map": model_map, "since": str(since_month), "by": "model"})
            parts.append(table("whatif", _WHATIF_HEADINGS, (_whatif_cells(row, usd) for row in _with_total(result)),
                               "No requests this month yet."))
        if batch:
            result = await report(request, {"model_map": {}, "since": str(since_month), "by": "model", "batch": True})
            parts.append(table("batch", _BATCH_HEADINGS, (_batch_cells(row, usd) for row in _with_total(result)),
                               "No requests this month yet."))
    except ProxyError as err:
        parts.append(f'<p class="empty warn" id="whatif-error">{html.escape(err.message)}</p>')
    return "".join(parts)


def _with_total(result: dict) -> list[dict]:
    return [*result["groups"], result["total"]] if result["groups"] else []


def _whatif_cells(row: dict, usd: Usd) -> str:
    basis = "; ".join(html.escape(basis) for basis in row["bases"]) or "unchanged"
    return (f"<td>{html.escape(row['group'])}</td><td class=num>{row['requests']:,}</td>"
            f"<td class=num>{row['affected_share']:.0%}</td><td class=num>{usd(row['actual_nanos'])}</td>"
            f"<td class=num>{usd(row['whatif_nanos'])}</td><td class=num>{usd(row['difference_nanos'])}</td>"
            f"<td class=dim>{basis}</td>")


def _batch_cells(row: dict, usd: Usd) -> str:
    return (f"<td>{html.escape(row['group'])}</td><td class=num>{row['requests']:,}</td>"
            f"<td class=num>{row['eligible_requests']:,}</td><td class=num>{row['tolerant_requests']:,}</td>"
            f"<td class=num>{usd(row['tolerant_actual_nanos'])}</td><td class=num>{usd(row['tolerant_batch_nanos'])}"
            f"</td><td class=num>{usd(row['tolerant_saving_nanos'])}</td>"
            f"<td class=num>{usd(row['eligible_saving_nanos'])}</td>")


_FORM = """<form id="whatif-form" method="get" action="/ui" class="card">
<label>Reprice this month as <input name="whatif" value="{value}" placeholder="gpt-4o=gpt-4o-mini" size="40"></label>
<label><input type="checkbox" name="batch" value="1"{checked}> and what a Batch API would have saved</label>
<button type="submit">Show</button>
<span class="dim">offline, from the ledger: no request is sent anywhere (also: <code>thriftgate whatif</code>,
<code>GET /admin/whatif</code>)</span></form>"""
