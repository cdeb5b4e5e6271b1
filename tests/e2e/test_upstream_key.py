"""An upstream key variable that is not set: a warning at load and in check-config, and a 502 naming the upstream
and the variable for a request that needs the key, rather than the upstream's own "Incorrect API key"."""

import asyncio
import sys
from pathlib import Path

import aiohttp
import yaml

from proxy.control.keys import key_hash
from tests.conftest import StartProxy, base_config
from tests.processes import ROOT, free_port, thriftgate

UNSET = "THRIFTGATE_TEST_UNSET_UPSTREAM_KEY"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def config_with_unset_key(fake_url: str, tmp_path: Path) -> dict:
    config = base_config(fake_url, tmp_path)
    config["upstreams"][0]["api_key_env"] = UNSET
    return config


def test_check_config_warns_about_an_unset_key(tmp_path: Path) -> None:
    path = tmp_path / "thriftgate.yaml"
    path.write_text(yaml.safe_dump(config_with_unset_key("http://127.0.0.1:9/v1", tmp_path)))
    result = thriftgate("check-config", str(path))
    assert result.returncode == 0  # valid: passing clients' own keys on is a way to run
    warnings = [line for line in result.stderr.splitlines() if line.startswith("# warning:")]
    assert len(warnings) == 1 and f"${UNSET}" in warnings[0] and "(fake)" in warnings[0]  # on 0d52d64: none


async def test_serve_warns_about_an_unset_key_when_it_starts(tmp_path: Path) -> None:
    path = tmp_path / "thriftgate.yaml"
    path.write_text(yaml.safe_dump(config_with_unset_key("http://127.0.0.1:9/v1", tmp_path)))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--config", str(path), "--port", str(free_port()), cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        lines = []
        while not lines or "listening" not in lines[-1]:
            lines.append((await asyncio.wait_for(process.stderr.readline(), 30)).decode())
    finally:
        process.terminate()
        await process.wait()
    assert any("WARNING" in line and f"${UNSET}" in line for line in lines), lines


async def test_a_request_that_needs_the_missing_key_gets_a_502_naming_it(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(upstreams=config_with_unset_key(fake.base_url, Path("."))["upstreams"],
                              auth={"keys": [{"id": "bot", "team": "t", "sha256": key_hash("tg-bot-key")}]})
    async with aiohttp.ClientSession() as session:
        for headers in ({"Authorization": "Bearer tg-bot-key"}, {}):  # a thriftgate key (stripped), or no key
            async with session.post(proxy.base_url + "/chat/completions", json=CHAT, headers=headers) as response:
                assert response.status == 502  # on 0d52d64: the upstream's 401, as if the client's key were wrong
                error = (await response.json())["error"]
                assert error["code"] == "upstream_key_missing"
                assert "'fake'" in error["message"] and f"${UNSET}" in error["message"]
        assert fake.requests == []
        own = {"Authorization": f"Bearer {fake.api_key}"}  # a client's own upstream key still goes through
        async with session.post(proxy.base_url + "/chat/completions", json=CHAT, headers=own) as response:
            assert response.status == 200
    rows = await proxy.ledger.recent(5)
    assert sorted((row["status"], row["error"]) for row in rows) == [
        (200, None), (502, "upstream_key_missing"), (502, "upstream_key_missing")]
