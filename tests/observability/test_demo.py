"""`thriftgate demo`: a mixed workload through a proxy, its own or one already running."""

import asyncio
import sys
from pathlib import Path

from proxy.accounting.ledger import open_readonly
from tests.conftest import StartProxy
from tests.observability.tools import ROOT, free_port

TRAFFIC = ("--duration", "1", "--rps", "40", "--seed", "7")


async def test_demo_fills_its_own_ledger_with_several_models_streamed_and_not(tmp_path: Path) -> None:
    ledger = tmp_path / "demo.db"
    output = await _demo("--port", str(free_port()), "--ledger", str(ledger))
    assert "page: http://127.0.0.1:" in output and "sent " in output
    with open_readonly(ledger) as reader:
        rows = reader.recent(10_000)
    assert len(rows) >= 20
    chat = [row for row in rows if row["endpoint"] == "chat" and row["status"] == 200]
    assert {row["stream"] for row in chat} == {True, False}
    assert len({row["model"] for row in chat}) >= 4
    assert any(row["endpoint"] == "embeddings" for row in rows)
    assert all(row["cost_nanos"] > 0 and row["usage_source"] == "upstream" for row in chat if row["model"] == "gpt-4o")


async def test_demo_drives_a_running_proxy_through_its_provider(start_proxy: StartProxy) -> None:
    provider_port = free_port()
    proxy = await start_proxy(upstreams=[
        {"name": "openai", "base_url": f"http://127.0.0.1:{provider_port}/v1", "api_key_env": None}
    ])
    await _demo("--target", proxy.url, "--upstream-port", str(provider_port))
    rows = await proxy.ledger.recent(10_000)
    assert len(rows) >= 20 and {row["upstream"] for row in rows} == {"openai"}
    # Answered, but for the provider's simulated refusals: drawn at random, some 3 to 6 in a hundred.
    refusals = {(429, "upstream_429"), (500, "upstream_500")}
    assert {(row["status"], row["error"]) for row in rows} <= {(200, None), *refusals}
    assert sum(row["status"] == 200 for row in rows) >= 0.75 * len(rows)


async def _demo(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "demo", *TRAFFIC, *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return out.decode()
