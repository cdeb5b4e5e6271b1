"""`thriftgate serve --workers 2`: one port, one /metrics adding up both workers, every record in the ledger."""

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import yaml

from proxy.accounting.ledger import open_readonly
from tests.conftest import base_config
from tests.fake_upstream import FakeUpstream
from tests.observability.tools import ROOT, answers, eventually, free_port, running, send_round


async def test_two_workers_count_every_request_once_and_record_them_all(fake: FakeUpstream, tmp_path: Path) -> None:
    config_path = tmp_path / "thriftgate.yaml"
    config_path.write_text(yaml.safe_dump(base_config(fake.base_url, tmp_path)))
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"an earlier run's counts")  # must not be added in
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = (sys.executable, "-m", "proxy", "serve", "--config", str(config_path), "--port", str(port),
               "--workers", "2")
    async with running(*command, cwd=ROOT, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                       stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL) as process:
        async with aiohttp.ClientSession() as session:
            await eventually(lambda: answers(session, url + "/readyz"), timeout=60, what="thriftgate to start")
            assert not (metrics_dir / "counter_999999.db").exists()
            ids: list[str] = []

            async def both_workers_served() -> bool:  # the second may bind the port seconds after the first
                ids.extend(await send_round(url))
                return len(list(metrics_dir.glob("counter_*.db"))) == 2

            await eventually(both_workers_served, timeout=30, what="both workers to take connections")
            for _ in range(4):  # whichever worker answers, it reports both
                assert await _requests_total(session, url) == len(ids)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    with open_readonly(tmp_path / "ledger.db") as ledger:
        recorded = {row["request_id"] for row in ledger.recent(1000) if row["parent_id"] is None}
    assert recorded == set(ids)


async def _requests_total(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(url + "/metrics", headers={"Connection": "close"}) as response:
        text = await response.text()
    return sum(float(value) for value in re.findall(r"^thriftgate_requests_total\{.*\} (\S+)$", text, re.M))
