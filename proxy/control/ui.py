"""The built-in page at /ui: spend today and this month, what the policies saved, spend by day (a chart),
by model and team, savings by mechanism, the last requests (cache hits marked).

One page rendered on the server from the ledger: inline CSS, no script, nothing fetched from
elsewhere, so it works offline and its Content-Security-Policy forbids everything else. It shows no
key, user or prompt. `add_routes` takes the guard (authentication) that wraps the page.
"""

import html
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
from aiohttp import web

from proxy.analysis.ui_section import whatif_section
from proxy.appkeys import LEDGER
from proxy.accounting.money import NANOS_PER_USD
from proxy.accounting.savings import savings_report

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RECENT_ROWS = 25
CHART_DAYS = 30
REFRESH_SECONDS = 15
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def add_routes(router: web.UrlDispatcher, *, guard: Callable[[Handler], Handler] = lambda handler: handler) -> None:
    router.add_get("/", to_page)  # a redirect reveals nothing: it needs no guard
    router.add_get("/ui", guard(page))


async def to_page(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui")


async def page(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    now = datetime.now(UTC)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    since_day, since_month = day_start.timestamp(), month_start.timestamp()
    by_model = _joined(await ledger.spend(by="model", since=since_month),
                       await ledger.spend(by="model", since=since_day), "model")
    by_team = _joined(await ledger.spend(by="team", since=since_month),
                      await ledger.spend(by="team", since=since_day), "team")
    report = savings_report(await ledger.policy_rows(since=since_month), since=since_month, until=now.timestamp())
    savings = sorted(report, key=lambda row: (row["mechanism"] or "", row["policy"]))
    recent = await ledger.recent(RECENT_ROWS, requests_only=True)  # as the request counts: attempts are not requests
    first_day = day_start - timedelta(days=CHART_DAYS - 1)
    daily = {row["day"]: row["cost_nanos"] for row in await ledger.spend(by="day", since=first_day.timestamp())}
    days = [(first_day + timedelta(days=n)).date().isoformat() for n in range(CHART_DAYS)]
    whatif = await whatif_section(request, since_month, table=_table, usd=usd)
    body = _document(now, by_model, by_team, savings, recent, [(day, daily.get(day, 0)) for day in days], whatif)
    return web.Response(text=body, content_type="text/html", charset="utf-8", headers=_HEADERS)


def _joined(month: list[dict], today: list[dict], key: str) -> list[dict]:
    """The month's rows (most spent first), each with today's cost beside it."""
    today_cost = {row[key]: row["cost_nanos"] for row in today}
    return [{**row, "today_nanos": today_cost.get(row[key], 0)} for row in month]


def usd(nanos: int | None) -> str:
    """Dollars as people read them: cents from $1 up, micro-dollars below."""
    if nanos is None:
        return "unpriced"
    sign, dollars = "-" if nanos < 0 else "", Decimal(abs(nanos)) / NANOS_PER_USD
    if dollars >= 1:
        return f"{sign}${dollars:,.2f}"
    if nanos and dollars < Decimal("0.000001"):
        return f"{sign}<$0.000001"
    return f"{sign}${dollars:.6f}"


def _e(value: object) -> str:
    return html.escape(str(value))


def _name(value: str | None, missing: str) -> str:
    return _e(value) if value else f'<span class="dim">{missing}</span>'


def _document(now: datetime, by_model: list[dict], by_team: list[dict], savings: list[dict], recent: list[dict],
              daily: list[tuple[str, int]], whatif: str = "") -> str:
    month_total = sum(row["cost_nanos"] for row in by_model)
    saved = [_saved(row) for row in savings]
    saved_total = sum(nanos for nanos, _ in saved if nanos)
    estimated = any(nanos and not exact for nanos, exact in saved)
    today_total = sum(row["today_nanos"] for row in by_model)
    requests = sum(row["requests"] for row in by_model)
    unpriced = sum(row["unpriced_requests"] for row in by_model)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>thriftgate: spend</title>
<style>{_CSS}</style></head><body>
<header><h1>thriftgate</h1><span class="dim">spend from the ledger, {now:%Y-%m-%d %H:%M:%S} UTC</span></header>
<section class="cards">
<div class="card"><div class="label">Today (UTC)</div>
<div class="figure" id="today-total">{usd(today_total)}</div></div>
<div class="card"><div class="label">This month</div><div class="figure" id="month-total">{usd(month_total)}</div>
<div class="dim">{requests:,} requests</div></div>
<div class="card"><div class="label">Saved this month</div>
<div class="figure good" id="month-saved">{'~' if estimated else ''}{usd(saved_total)}</div>
<div class="dim">{'exact and held-out estimates' if estimated else 'by the policies, exactly'}</div></div>
<div class="card"><div class="label">Unpriced requests this month</div>
<div class="figure{' warn' if unpriced else ''}" id="month-unpriced">{unpriced:,}</div></div>
</section>
<h2>Spend by day (UTC), last {CHART_DAYS} days</h2>{_chart(daily)}
<h2>By model</h2>{_spend_table("by-model", "Model", "model", "(pass-through)", by_model, month_total)}
<h2>By team</h2>{_spend_table("by-team", "Team", "team", "(no team)", by_team, month_total)}
<h2>Savings by mechanism this month</h2>{_table("savings", _SAVINGS_HEADINGS, map(_savings_row, savings),
                                                 "No savings recorded yet.")}
<h2>What if</h2>{whatif}
<h2>Last requests</h2>{_table("recent", _RECENT_HEADINGS, map(_recent_row, recent), "No requests yet.")}
<p class="dim">* counted by the proxy: the upstream sent no usage</p>
</body></html>
"""


def _spend_table(table_id: str, heading: str, key: str, missing: str, rows: list[dict], total: int) -> str:
    headings = (heading, "Today", "This month", "Share", "Requests", "Unpriced", "Prompt tokens", "Completion tokens")
    cells = (
        f"<td>{_name(row[key], missing)}</td><td class=num>{_cost(row, row['today_nanos'])}</td>"
        f"<td class=num>{_cost(row, row['cost_nanos'])}</td>"
        f"<td class=bar><i style=\"width:{_share(row['cost_nanos'], total)}%\"></i></td>"
        f"<td class=num>{row['requests']:,}</td><td class=num>{row['unpriced_requests']:,}</td>"
        f"<td class=num>{row['prompt_tokens']:,}</td><td class=num>{row['completion_tokens']:,}</td>"
        for row in rows
    )
    return _table(table_id, headings, cells, "No requests this month yet.")


def _cost(row: dict, nanos: int) -> str:
    """Unpriced when every request was and nothing was paid (a group may hold only billed failed attempts)."""
    return "unpriced" if not nanos and row["unpriced_requests"] == row["requests"] > 0 else usd(nanos)


def _share(nanos: int, total: int) -> int:
    return round(100 * nanos / total) if total else 0


_SAVINGS_HEADINGS = ("Mechanism", "Policy", "Treated", "Held out", "Saved", "Measured", "Shadow: would save")


def _savings_row(row: dict) -> str:
    return (f"<td>{_name(row['mechanism'], '-')}</td><td>{_e(row['policy'])}</td>"
            f"<td class=num>{row['treated_requests']:,}</td><td class=num>{row['held_out_requests']:,}</td>"
            f"{_saved_cells(row)}<td class=num>{usd(row['shadow_would_save_nanos'])}</td>")


def _saved(row: dict) -> tuple[int | None, bool]:
    """What a policy saved, and whether exactly: exact where the policy knows it (route, cascade, lookups),
    else held-out traffic's estimate (None until both arms have requests)."""
    if row["counterfactual_saved_nanos"]:
        return row["counterfactual_saved_nanos"], True
    per_request = row["saving_per_request_nanos"]
    return (None if per_request is None else round(per_request * row["treated_requests"])), False


def _saved_cells(row: dict) -> str:
    nanos, exact = _saved(row)
    if exact:
        return f"<td class=num>{usd(nanos)}</td><td>exact</td>"
    if nanos is None:
        return '<td class=num>-</td><td class="dim">needs held-out requests</td>'
    low, high = (usd(round(bound * row["treated_requests"])) for bound in row["saving_ci95_nanos"])
    return f"<td class=num>~{usd(nanos)}</td><td>held-out estimate, 95%: {low} to {high}</td>"


def _chart(daily: list[tuple[str, int]]) -> str:
    """One bar a day, scaled to the dearest; a bar's title tells its day and amount."""
    top = max((nanos for _, nanos in daily), default=0)
    if not top:
        return '<p class="empty" id="daily">No spend in these days.</p>'
    bars = "".join(
        f'<div class="day" title="{day}: {usd(nanos)}"><i style="height:{_share(nanos, top)}%"></i>'
        f"<span>{day[8:]}</span></div>"
        for day, nanos in daily
    )
    return f'<div class="chart" id="daily" data-max="{usd(top)}">{bars}</div>'


_RECENT_HEADINGS = ("Time (UTC)", "Request id", "Endpoint", "Model", "Team", "Status", "Prompt tokens",
                    "Completion tokens", "Cost", "Latency")


def _recent_row(row: dict) -> str:
    return (f"<td>{datetime.fromtimestamp(row['ts'], UTC):%m-%d %H:%M:%S}</td>"
            f"<td class=mono>{_e(row['request_id'])}</td>"
            f"<td>{_e(row['endpoint'])}{' (stream)' if row['stream'] else ''}{_hit_mark(row['lookups'])}</td>"
            f"<td>{_name(row['model'], '-')}</td><td>{_name(row['team'], '-')}</td>"
            f"<td class=\"num{' err' if row['status'] >= 400 else ''}\">{row['status']}</td>"
            f"<td class=num>{row['prompt_tokens']:,}</td><td class=num>{row['completion_tokens']:,}</td>"
            f"<td class=num>{_request_cost(row)}{'*' if row['usage_source'] == 'estimated' else ''}</td>"
            f"<td class=num>{_milliseconds(row['latency_ms'])}</td>")


def _request_cost(row: dict) -> str:
    """A refusal or a pass-through has no price to show; only a model with no price that did work is unpriced."""
    if row["cost_nanos"] is None and (row["endpoint"] == "passthrough" or not row["model"]):
        return "-"
    return usd(row["cost_nanos"])


def _hit_mark(lookups: str | None) -> str:
    """A request a lookup answered (not a shadow's would-be hit): marked, with the kind of hit."""
    if not lookups:
        return ""
    hits = [trace["result"] for trace in orjson.loads(lookups).values()
            if trace.get("result", "").endswith("-hit") and not trace.get("shadow")]
    return f' <span class="hit">{_e(hits[0].replace("-hit", " hit"))}</span>' if hits else ""


def _milliseconds(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:,.0f} ms"


def _table(table_id: str, headings: Iterable[str], rows: Iterable[str], empty: str) -> str:
    """A table of the rows' cells, or the `empty` sentence when there are none."""
    body = "".join(f"<tr>{cells}</tr>" for cells in rows)
    if not body:
        return f'<p class="empty" id="{table_id}">{empty}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:0 24px 32px;max-width:1200px;
color:#1d2330;background:#f6f7f9}
header{display:flex;align-items:baseline;gap:16px;padding:16px 0;border-bottom:1px solid #dde1e7}
h1{font-size:20px;margin:0}h2{font-size:15px;margin:24px 0 8px}
.dim{color:#6b7385}.mono{font-family:ui-monospace,monospace;font-size:12px}
.cards{display:flex;gap:16px;margin-top:16px}
.card{flex:1;background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:12px 16px}
.label{color:#6b7385;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.figure{font-size:26px;font-weight:600;font-variant-numeric:tabular-nums}.warn{color:#b45309}
table{width:100%;border-collapse:collapse;background:#fff;border:1px solid #dde1e7}
th,td{padding:5px 8px;border-bottom:1px solid #eef0f3;text-align:left;white-space:nowrap}
th{font-size:12px;color:#6b7385;font-weight:600;background:#fafbfc}
.num{text-align:right;font-variant-numeric:tabular-nums}.err{color:#b91c1c;font-weight:600}
.bar{width:18%}.bar i{display:block;height:8px;background:#3b82f6;border-radius:2px;min-width:1px}
.empty{background:#fff;border:1px dashed #c9ced8;border-radius:6px;padding:12px 16px;color:#6b7385}
form.card{display:flex;gap:16px;align-items:center;flex-wrap:wrap;margin-bottom:8px}
.good{color:#047857}.hit{font-size:11px;background:#dcfce7;color:#047857;border-radius:3px;padding:1px 5px}
.chart{display:flex;align-items:flex-end;gap:3px;height:120px;background:#fff;border:1px solid #dde1e7;
border-radius:6px;padding:8px 8px 20px}
.day{flex:1;height:100%;display:flex;flex-direction:column;justify-content:flex-end;position:relative}
.day i{display:block;background:#3b82f6;border-radius:2px 2px 0 0;min-height:1px}
.day span{position:absolute;bottom:-16px;width:100%;text-align:center;font-size:10px;color:#6b7385}
"""
