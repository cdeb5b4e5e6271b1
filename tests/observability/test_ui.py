"""The built-in page: what a browser shows matches the ledger, and it leaks and loads nothing."""

import asyncio
import os
import shutil
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import aiohttp

from proxy.control import ui
from proxy.accounting.ledger import Ledger
from tests.conftest import RunningProxy, StartProxy
from tests.fake_upstream import FAKE_API_KEY
from tests.observability.tools import require, send_round

ROUTE = {"name": "gpt-4o-to-mini", "type": "route", "match": {"models": ["gpt-4o"]}, "to": "gpt-4o-mini"}
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")


class PageText(HTMLParser):
    """The text of every element with an id, and the cells of every table with an id."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._open: list[str | None] = []  # the id of every element open now, None for those without
        self._table: str | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        element_id = dict(attrs).get("id")
        self._open.append(element_id)
        if element_id is not None:
            self.text[element_id] = ""
        if tag == "table":
            self._table = element_id
            self.tables[element_id] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag == "td" and self._table is not None:
            self.tables[self._table][-1].append("")

    def handle_endtag(self, tag: str) -> None:
        self._open.pop()
        if tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        for element_id in filter(None, self._open):
            self.text[element_id] += data
        if self._table is not None and self.tables[self._table] and self.tables[self._table][-1]:
            self.tables[self._table][-1][-1] += data


async def test_page_in_chromium_shows_the_ledger(start_proxy: StartProxy, tmp_path: Path) -> None:
    proxy = await start_proxy(policies=[ROUTE])
    ids = [*await send_round(proxy.url), *await send_round(proxy.url)]
    url = proxy.url + "/ui"
    page = PageText((await _chromium(tmp_path / "profile-dom", "--dump-dom", url)).decode())
    await _assert_figures_match(page, proxy.ledger)
    shown = [row[1] for row in page.tables["recent"][1:] if "." not in row[1]]  # a retried attempt: <id>.<n>
    assert shown == list(reversed(ids))[:len(shown)]
    assert [row[:2] for row in page.tables["savings"][1:]] == [["routing", ROUTE["name"]]]

    screenshot = tmp_path / "ui.png"
    await _chromium(tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1280,900", url)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
    if artifacts := os.environ.get("THRIFTGATE_ARTIFACTS"):
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(artifacts) / "ui.png")


async def test_page_shows_what_a_policy_saved(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(policies=[ROUTE])
    await send_round(proxy.url)  # its two gpt-4o streams are answered by gpt-4o-mini
    async with aiohttp.ClientSession() as session, session.get(proxy.url + "/ui") as response:
        page = PageText(await response.text())
    saved = sum(row["savings_nanos"] for row in await proxy.ledger.recent(100))
    assert saved > 0
    assert page.tables["savings"][1:] == [["routing", "gpt-4o-to-mini", "2", "0", ui.usd(saved), "exact", "$0.000000"]]


async def test_page_escapes_what_clients_send_and_shows_no_secret(proxy: RunningProxy) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-client-secret"}) as session:
        body = {"model": "<script>alert(1)</script>", "messages": [{"role": "user", "content": "hi"}]}
        async with session.post(proxy.base_url + "/chat/completions", json=body) as response:
            assert response.status == 404  # the upstream knows no such model; the ledger has its row
        async with session.get(proxy.url + "/", allow_redirects=False) as response:
            assert (response.status, response.headers["Location"]) == (302, "/ui")
        async with session.get(proxy.url + "/ui") as response:
            page = await response.text()
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page
    assert FAKE_API_KEY not in page and "sk-client-secret" not in page
    assert "http://" not in page and "https://" not in page  # nothing loads from anywhere


async def test_page_of_an_empty_ledger(proxy: RunningProxy) -> None:
    async with aiohttp.ClientSession() as session, session.get(proxy.url + "/ui") as response:
        page = PageText(await response.text())
    assert page.text["month-total"] == "$0.000000"
    assert page.text["by-model"] == "No requests this month yet." and page.text["recent"] == "No requests yet."
    assert page.text["savings"] == "No savings recorded yet."


async def _chromium(profile: Path, *args: str) -> bytes:
    """Runs headless Chromium while this loop goes on serving the page it asks for."""
    process = await asyncio.create_subprocess_exec(
        require("chromium", "chromium"), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()[-2000:]
    return out


async def _assert_figures_match(page: PageText, ledger: Ledger) -> None:
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = await ledger.spend(by="model", since=day.replace(day=1).timestamp())
    today = {row["model"]: row["cost_nanos"] for row in await ledger.spend(by="model", since=day.timestamp())}
    shown = {row[0]: row for row in page.tables["by-model"][1:]}
    assert len(shown) == len(month)
    for row in month:
        name = row["model"] or "(pass-through)"
        unpriced = row["unpriced_requests"] == row["requests"]
        expected = [name, "unpriced" if unpriced else ui.usd(today.get(row["model"], 0)),
                    "unpriced" if unpriced else ui.usd(row["cost_nanos"]), "", f"{row['requests']:,}"]
        assert shown[name][:5] == expected
    assert page.text["month-total"] == ui.usd(sum(row["cost_nanos"] for row in month))
    assert page.text["today-total"] == ui.usd(sum(today.values()))


async def test_page_headlines_savings_charts_days_and_marks_cache_hits(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(policies=[ROUTE, {"name": "faq", "type": "exact_cache"}])
    async with aiohttp.ClientSession() as session:
        for _ in range(2):  # the second is answered by the cache
            hi = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(proxy.base_url + "/chat/completions", json=hi) as r:
                await r.read()
        await send_round(proxy.url)  # its gpt-4o requests are routed to gpt-4o-mini
        async with session.get(proxy.url + "/ui") as response:
            page = PageText(await response.text())
    rows = await proxy.ledger.recent(100)
    saved = sum(row["savings_nanos"] for row in rows)
    assert saved > 0 and page.text["month-saved"] == ui.usd(saved)  # exact savings only: no "~"
    marked = {cells[1] for cells in page.tables["recent"][1:] if "exact hit" in cells[2]}
    hit_rows = {row["request_id"] for row in rows if row["lookups"] and '"exact-hit"' in row["lookups"]}
    assert marked == hit_rows and len(marked) >= 1  # on 0d52d64: no mark, no headline, no chart
    today = datetime.now(UTC).date().isoformat()
    month = sum(row["cost_nanos"] or 0 for row in rows)
    assert f'title="{today}: {ui.usd(month)}"' in (await _page(proxy))
    assert page.text["daily"].strip().endswith(today[8:])  # the last bar is today's


async def _page(proxy: RunningProxy) -> str:
    async with aiohttp.ClientSession() as session, session.get(proxy.url + "/ui") as response:
        return await response.text()


def test_a_model_with_only_billed_failed_attempts_shows_their_cost_not_unpriced() -> None:
    """Its requests were answered by a fallback: 0 requests of its own, yet its attempts were billed."""
    row = {"model": "gpt-4o", "requests": 0, "unpriced_requests": 0, "cost_nanos": 2_500_000, "today_nanos": 2_500_000,
           "prompt_tokens": 1000, "completion_tokens": 0}
    [_, cells] = PageText(ui._spend_table("by-model", "Model", "model", "-", [row], 2_500_000)).tables["by-model"]
    assert cells[1:5] == ["$0.002500", "$0.002500", "", "0"]
