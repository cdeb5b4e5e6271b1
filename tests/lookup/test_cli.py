"""`thriftgate lookup load` through a running proxy, and `thriftgate lookup report` from its ledger."""

import asyncio
import json

import pytest

from proxy import cli
from tests.lookup.conftest import sdk
from tests.lookup.test_end_to_end import DARK_MODE, FAQ, chat


async def test_load_sends_answers_through_the_admin_api(start_lookups, fake, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("THRIFTGATE_MASTER_KEY", "tg-master-for-tests")
    proxy = await start_lookups([{"type": "answers", "embedder": "minilm", "scope": "team"}])
    answers = tmp_path / "answers.jsonl"
    answers.write_text("\n".join(json.dumps({"question": f"What is the price of plan {n}?", "answer": f"${n}0"})
                                 for n in range(1, 4)) + "\n")
    code = await asyncio.to_thread(cli.main, ["lookup", "load", str(answers), "--scope", "team:-",
                                              "--embedder", "minilm", "--url", proxy.url])
    assert code == 0 and "loaded 3 answers into team:-" in capsys.readouterr().out
    async with sdk(proxy) as client:
        hit = await chat(client, proxy, "What is the price of plan 2?")
        other_plan = await chat(client, proxy, "What is the price of plan 5?")
    assert hit.parse().choices[0].message.content == "$20"
    assert other_plan.headers["x-thriftgate-lookup"] == "miss"  # 0.98 alike, but another number


async def test_report_shows_hit_rate_and_precision_by_band(start_lookups, fake, tmp_path, capsys) -> None:
    proxy = await start_lookups([{**FAQ, "mode": "shadow", "agreement": 0.99}])
    async with sdk(proxy) as client:
        for text in (DARK_MODE, DARK_MODE, "How can I switch on dark mode?", "Where is the nearest station?"):
            await chat(client, proxy, text)
    await proxy.ledger.flush()
    ledger = str(tmp_path / "ledger.db")  # tests.conftest.base_config's
    assert await asyncio.to_thread(cli.main, ["lookup", "report", "--ledger", ledger, "--json"]) == 0
    (faq,) = json.loads(capsys.readouterr().out)
    assert (faq["policy"], faq["mode"], faq["lookups"], faq["hits"]) == ("faq", "shadow", 4, 2)
    assert faq["hit_rate"] == pytest.approx(0.5)
    top, below = faq["bands"][0], faq["bands"][-1]
    assert (top["from"], top["candidates"], top["agreed"], top["precision"]) == (0.98, 1, 1, 1.0)
    assert below["from"] == 0.92 and below["agreed"] == 0 and below["threshold_precision"] == pytest.approx(0.5)
    assert await asyncio.to_thread(cli.main, ["lookup", "report", "--ledger", ledger]) == 0
    assert "faq (shadow): 4 lookups, 2 hits (50.0%)" in capsys.readouterr().out
