"""Savings measured against held-out traffic, reported by `thriftgate savings`; reload under load."""

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import openai
import yaml

from proxy.accounting.savings import savings_report
from tests.conftest import StartProxy, base_config

ROOT = Path(__file__).resolve().parents[2]
ASK = [{"role": "user", "content": "Tell me about the rivers of Europe."}]
MASTER = "master-key-for-tests"
ADMIN = {"Authorization": f"Bearer {MASTER}"}


async def test_concise_savings_are_measured_against_the_holdout(start_proxy: StartProxy, tmp_path: Path) -> None:
    proxy = await start_proxy(policies=[{"name": "be-brief", "type": "concise", "holdout": 0.3}])
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0) as client:
        for batch in range(6):
            await asyncio.gather(*(
                client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"q {batch} {i}"}])
                for i in range(25)
            ))
    rows = await proxy.ledger.policy_rows()
    (report,) = savings_report(rows, since=time.time() - 3600, until=time.time())
    assert report["policy"] == "be-brief"
    assert report["treated_requests"] + report["held_out_requests"] == 150
    assert report["held_out_requests"] >= 20  # 45 expected; fewer than 20 is a one-in-10^6 draw
    # The fake answers a concise request with a quarter of the words.
    assert report["treated_mean_completion_tokens"] < report["held_out_mean_completion_tokens"] / 2
    low, high = report["saving_ci95_nanos"]
    assert 0 < low <= report["saving_per_request_nanos"] <= high  # the fake is deterministic: a narrow interval
    assert report["projected_monthly_saving_nanos"] > 0
    metrics = proxy.metrics.render().decode()
    assert 'thriftgate_savings_usd_total{basis="holdout_estimate",mechanism="concise",policy="be-brief"}' in metrics

    await proxy.ledger.flush()
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "savings", "--ledger", str(tmp_path / "ledger.db"), "--since", "1h"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "be-brief" in result.stdout and "saving/req (95% CI)" in result.stdout


async def test_reload_under_load_loses_no_request(start_proxy: StartProxy, fake, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("THRIFTGATE_MASTER_KEY", MASTER)  # a reload is an admin write
    config_path = tmp_path / "thriftgate.yaml"
    config = base_config(fake.base_url, tmp_path)
    config_path.write_text(yaml.safe_dump(config))
    proxy = await start_proxy(config_path=config_path)
    body = {"model": "gpt-4o", "messages": ASK}
    async with aiohttp.ClientSession() as session:
        async def ask(delay_ms: int) -> tuple[int, str | None]:
            async with session.post(proxy.base_url + "/chat/completions", json=body,
                                    headers={"x-fake-latency-ms": str(delay_ms)}) as response:
                await response.read()
                return response.status, response.headers.get("x-thriftgate-policies")

        in_flight = [asyncio.create_task(ask(300)) for _ in range(30)]
        while len(fake.requests) < 30:
            await asyncio.sleep(0.01)
        config_path.write_text(yaml.safe_dump({**config, "policies": [{"name": "be-brief", "type": "concise"}]}))
        async with session.post(proxy.url + "/admin/reload", headers=ADMIN) as response:
            assert response.status == 200
            assert (await response.json())["policies"] == ["be-brief"]
        after = await ask(0)
        before = await asyncio.gather(*in_flight)

        config_path.write_text("policies:\n  - {type: cap}\n")
        async with session.post(proxy.url + "/admin/reload", headers=ADMIN) as response:
            assert response.status == 400
            refusal = await response.json()
        still = await ask(0)

    assert before == [(200, None)] * 30  # started before the reload: finished unchanged
    assert after == (200, "be-brief")
    assert "a cap needs max_tokens, n, or both" in refusal["error"]["message"]
    assert still == (200, "be-brief")  # the refused config left the running one in place
    assert len(await proxy.ledger.recent(100)) == 32
