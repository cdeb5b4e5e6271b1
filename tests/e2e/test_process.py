"""thriftgate as a real process: the CLI, and a SIGTERM with requests in flight."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
import json
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from proxy.appkeys import CONFIG
from proxy.accounting.ledger import open_readonly
from proxy.accounting.money import format_usd
from tests.conftest import UPSTREAM_KEY_ENV, base_config
from tests.processes import ROOT, free_port, thriftgate, wait_ready

def test_check_config_masks_secrets_and_names_mistakes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(base_config("http://127.0.0.1:9/v1", tmp_path)))
    result = thriftgate("check-config", str(good), env={UPSTREAM_KEY_ENV: "sk-very-secret"})
    assert result.returncode == 0, result.stderr
    assert "sk-very-secret" not in result.stdout + result.stderr
    assert json.loads(result.stdout)["upstreams"][0]["api_key_env"] == f"{UPSTREAM_KEY_ENV} (set)"

    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: many\nupstreams:\n  - {name: a, base_url: http://x/v1, modles: ['*']}\n")
    result = thriftgate("check-config", str(bad))
    assert result.returncode == 2
    assert f"{bad}: server.port:" in result.stderr
    assert f"{bad}: upstreams[0] (a).modles: unknown key" in result.stderr


def test_serve_refuses_to_forward_to_itself(tmp_path: Path) -> None:
    result = thriftgate("serve", "--port", "4199", env={"OPENAI_BASE_URL": "http://localhost:4199/v1"})
    assert result.returncode == 2
    assert "own address" in result.stderr


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Served:
    process: asyncio.subprocess.Process
    url: str
    session: aiohttp.ClientSession

    async def chat(self, **headers: str) -> aiohttp.ClientResponse:
        async with self.session.post(self.url + "/v1/chat/completions", json=CHAT, headers=headers) as response:
            await response.read()
            return response


@asynccontextmanager
async def served(config_path: Path, config: dict, *, stdout: int = asyncio.subprocess.DEVNULL) -> AsyncIterator[Served]:
    """`thriftgate serve` in a process of its own, ready; killed at the end if a test left it running."""
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--config", str(config_path), "--port", str(port),
        cwd=ROOT, stdout=stdout, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:
            running = Served(process, f"http://127.0.0.1:{port}", session)
            await wait_ready(session, running.url)
            yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_sigterm_with_requests_in_flight_loses_no_spend_record(fake, tmp_path: Path) -> None:
    async with served(tmp_path / "thriftgate.yaml", base_config(fake.base_url, tmp_path)) as proxy:
        in_flight = [asyncio.create_task(proxy.chat(**{"x-fake-latency-ms": "800"})) for _ in range(8)]
        while len(fake.requests) < 8:
            await asyncio.sleep(0.02)
        proxy.process.send_signal(signal.SIGTERM)
        responses = await asyncio.gather(*in_flight)
        assert await asyncio.wait_for(proxy.process.wait(), 30) == 0
    assert [r.status for r in responses] == [200] * 8
    with open_readonly(tmp_path / "ledger.db") as ledger:
        rows = ledger.recent(100)
    assert {row["request_id"] for row in rows} == {r.headers["x-thriftgate-request-id"] for r in responses}
    assert all(row["status"] == 200 and row["cost_nanos"] > 0 for row in rows)


async def test_sighup_reloads_the_policies(fake, tmp_path: Path) -> None:
    config_path, config = tmp_path / "thriftgate.yaml", base_config(fake.base_url, tmp_path)
    async with served(config_path, config) as proxy:
        assert (await proxy.chat()).status == 200
        config_path.write_text(yaml.safe_dump({**config, "policies": [{"name": "closed", "type": "deny"}]}))
        proxy.process.send_signal(signal.SIGHUP)
        statuses = []
        for _ in range(100):
            statuses.append((await proxy.chat()).status)
            if statuses[-1] == 403:
                break
            await asyncio.sleep(0.05)
        assert statuses[-1] == 403
        assert proxy.process.returncode is None  # SIGHUP reloaded; it did not stop the proxy


async def test_served_process_writes_one_access_line_per_request(fake, tmp_path: Path) -> None:
    config = {**base_config(fake.base_url, tmp_path), "server": {"access_log": True}}
    async with served(tmp_path / "thriftgate.yaml", config, stdout=asyncio.subprocess.PIPE) as proxy:
        ids = [(await proxy.chat()).headers["x-thriftgate-request-id"] for _ in range(3)]
        proxy.process.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proxy.process.communicate(), 30)
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [line["request_id"] for line in lines if line["endpoint"] == "chat"] == ids


async def test_spend_prints_the_ledger_as_a_table(proxy_with_traffic) -> None:
    ledger_path, costs = proxy_with_traffic
    result = thriftgate("spend", "--ledger", str(ledger_path), "--since", "1h", "--by", "model")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["model", "requests"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["gpt-4o-mini"][1] == "2"
    assert rows["TOTAL"][-1] == format_usd(sum(costs))

    as_json = thriftgate("spend", "--ledger", str(ledger_path), "--by", "endpoint", "--json")
    assert {row["endpoint"] for row in json.loads(as_json.stdout)} == {"chat", "embeddings"}
    bad = thriftgate("spend", "--ledger", str(ledger_path), "--since", "yesterday-ish")
    assert bad.returncode == 2 and "--since" in bad.stderr


@pytest.fixture
async def proxy_with_traffic(proxy) -> tuple[Path, list[int]]:
    import openai

    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-x", max_retries=0) as sdk:
        for _ in range(2):
            await sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        await sdk.embeddings.create(model="text-embedding-3-small", input="hello")
    await proxy.ledger.flush()
    costs = [row["cost_nanos"] for row in await proxy.ledger.recent(10)]
    return Path(proxy.app[CONFIG].ledger.path), costs


def test_pricing_import_converts_a_litellm_price_map(tmp_path: Path) -> None:
    source = tmp_path / "prices.json"
    source.write_text(json.dumps({
        "my-model": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1.5e-07,
                     "output_cost_per_token": 6e-07, "cache_read_input_token_cost": 7.5e-08},
    }))
    out = tmp_path / "pricing.yaml"
    result = thriftgate("pricing", "import", str(source), "--out", str(out), "--providers", "openai")
    assert result.returncode == 0, result.stderr
    entry = yaml.safe_load(out.read_text())["models"]["my-model"]
    assert (str(entry["input"]), str(entry["output"]), str(entry["cached_input"])) == ("0.15", "0.6", "0.075")


def test_pricing_import_writes_stdout_or_out_and_never_the_shipped_table(tmp_path: Path) -> None:
    from proxy.accounting.pricing import default_pricing_path

    source = tmp_path / "prices.json"
    source.write_text(json.dumps({"my-model": {"litellm_provider": "openai", "mode": "chat",
                                               "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}))
    shipped = default_pricing_path().read_bytes()
    result = thriftgate("pricing", "import", str(source))  # on 0d52d64: replaced config/pricing.yaml in a checkout
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["models"]["my-model"]["input"] == 1
    for out in ("config/pricing.yaml", str(default_pricing_path())):
        refused = thriftgate("pricing", "import", str(source), "--out", out)
        assert refused.returncode == 2 and "shipped price table" in refused.stderr, out
    assert default_pricing_path().read_bytes() == shipped

    missing_dir = thriftgate("pricing", "import", str(source), "--out", str(tmp_path / "no" / "such" / "p.yaml"))
    assert missing_dir.returncode == 1 and len(missing_dir.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [b"not json at all", b"\xff\xfe\x00", b"[1, 2]", None,
                                     b'{"name": "my-app", "version": "1.0.0"}'])  # JSON, no price in it
def test_pricing_import_of_something_else_is_one_line(tmp_path: Path, content: bytes | None) -> None:
    source = tmp_path / "prices.json"
    if content is not None:
        source.write_bytes(content)
    result = thriftgate("pricing", "import", str(source), "--out", str(tmp_path / "out.yaml"))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()  # on 0d52d64: a traceback
    assert line.startswith(f"thriftgate: {source}: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "out.yaml").exists()


def test_version_and_spend_by_choices(tmp_path: Path) -> None:
    version = thriftgate("--version")
    assert version.returncode == 0 and version.stdout.startswith("thriftgate ")  # on 0d52d64: no such option
    bad = thriftgate("spend", "--ledger", str(tmp_path / "none.db"), "--by", "foo")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr  # on 0d52d64: a traceback
    assert "invalid choice: 'foo'" in bad.stderr and "'team'" in bad.stderr
