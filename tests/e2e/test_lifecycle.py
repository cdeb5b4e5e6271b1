"""Starting and stopping: a port that cannot be had is one line; a stop drains within the grace, a second signal
cuts the drain short and every row is still written; the ledger tells apart who ended an answer early."""

import asyncio
import signal
import socket
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from proxy.accounting.ledger import open_readonly
from tests.conftest import RunningProxy, base_config
from tests.e2e.test_process import served
from tests.processes import ROOT, thriftgate

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
SLOW_STREAM = {"x-fake-chunk-delay-ms": "100", "x-fake-words": "400"}  # about 40 s of tokens


@pytest.fixture
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("extra", [[], ["--workers", "2"]], ids=["one", "workers"])
def test_serve_on_a_port_in_use_says_so_in_one_line(taken_port: int, extra: list[str]) -> None:
    result = thriftgate("serve", "--port", str(taken_port), *extra)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"thriftgate: cannot listen on 127.0.0.1:{taken_port}: the port is in use; choose another with --port"]
    assert "listening" not in result.stdout + result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_host_that_is_not_this_machines_is_one_line(command: str, tmp_path: Path) -> None:
    ledger = ["--ledger", str(tmp_path / "d.db")] if command == "demo" else []
    result = thriftgate(command, "--host", "999.1.1.1", *ledger)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("thriftgate: cannot listen on 999.1.1.1:") and line.endswith("choose another with --host")


def test_the_demo_on_a_port_in_use_says_so_in_one_line(taken_port: int, tmp_path: Path) -> None:
    result = thriftgate("demo", "--port", str(taken_port), "--ledger", str(tmp_path / "demo.db"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"thriftgate: cannot listen on 127.0.0.1:{taken_port}: the port is in use; choose another with --port"]
    assert "Traceback" not in result.stderr


async def start_streams(proxy, count: int) -> list[asyncio.Task]:
    """`count` slow streams, each once it has relayed a few words; each task gives the stream's last data line."""
    started = [asyncio.Event() for _ in range(count)]

    async def stream(words_seen: asyncio.Event) -> bytes:
        last = b""
        try:
            async with proxy.session.post(proxy.url + "/v1/chat/completions", json={**CHAT, "stream": True},
                                          headers=SLOW_STREAM) as response:
                events = 0
                async for line in response.content:
                    if line.startswith(b"data:"):
                        events, last = events + 1, line
                    if events == 4:
                        words_seen.set()
        except aiohttp.ClientError:
            pass  # the proxy cut it: that is the point
        return last

    tasks = [asyncio.create_task(stream(event)) for event in started]
    await asyncio.gather(*(event.wait() for event in started))
    return tasks


async def until_not_listening(url: str) -> None:
    """The first signal was taken: the proxy no longer accepts connections."""
    for _ in range(200):
        try:
            # A probe accepted just as the proxy stopped listening is never answered: not listening either.
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session, \
                    session.get(url + "/healthz"):
                pass
        except (aiohttp.ClientConnectionError, TimeoutError):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the proxy kept accepting connections after SIGTERM")


def ledger_rows(path: Path) -> list[dict]:
    with open_readonly(path) as ledger:
        return ledger.recent(100)


async def test_a_second_signal_cuts_the_drain_short_and_every_row_is_still_written(fake, tmp_path: Path) -> None:
    config = base_config(fake.base_url, tmp_path)
    config["server"]["shutdown_grace_seconds"] = 120
    async with served(tmp_path / "thriftgate.yaml", config) as proxy:
        streams = await start_streams(proxy, 8)
        proxy.process.send_signal(signal.SIGTERM)
        await until_not_listening(proxy.url)
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 20) == 0  # not the 120 s of grace
        last_lines = await asyncio.gather(*streams)
    for last in last_lines:  # never a clean end a client could take for the whole answer
        assert orjson.loads(last[len(b"data:"):])["error"]["code"] == "proxy_shutdown"
    rows = ledger_rows(tmp_path / "ledger.db")
    assert len(rows) == 8  # on 0d52d64: 0 (the second signal ended the process before the flush)
    for row in rows:
        assert (row["status"], row["error"], row["client_disconnected"]) == (200, "proxy_shutdown", False)
        assert row["truncated"]
        assert row["completion_tokens"] > 0 and row["cost_nanos"] > 0  # what was streamed is counted and priced


async def test_the_drain_ends_with_the_grace_and_labels_what_it_cut(fake, tmp_path: Path) -> None:
    config = base_config(fake.base_url, tmp_path)
    config["server"]["shutdown_grace_seconds"] = 1
    async with served(tmp_path / "thriftgate.yaml", config) as proxy:
        streams = await start_streams(proxy, 4)
        async with proxy.session.post(proxy.url + "/v1/chat/completions", json=CHAT,
                                      headers={"x-fake-latency-ms": "300"}) as quick:  # ends within the grace
            proxy.process.send_signal(signal.SIGTERM)
            assert quick.status == 200 and (await quick.json())["object"] == "chat.completion"
        # The grace (1 s), then at most 2 s for the cut requests to record themselves, then the flush.
        assert await asyncio.wait_for(proxy.process.wait(), 10) == 0
        await asyncio.gather(*streams)
    rows = ledger_rows(tmp_path / "ledger.db")
    outcomes = sorted((row["stream"], row["status"], row["error"], row["client_disconnected"]) for row in rows)
    assert outcomes == [(False, 200, None, False)] + [(True, 200, "proxy_shutdown", False)] * 4


async def wait_for_row(proxy: RunningProxy) -> dict:
    for _ in range(200):
        rows = await proxy.ledger.recent(1)
        if rows:
            return rows[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no ledger row")


async def test_an_answer_whose_client_had_left_is_not_recorded_as_a_200(proxy: RunningProxy, fake) -> None:
    with pytest.raises(asyncio.TimeoutError):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as session:
            async with session.post(proxy.base_url + "/chat/completions", json=CHAT,
                                    headers={"x-fake-latency-ms": "600"}) as response:
                await response.read()
    row = await wait_for_row(proxy)
    # on 0d52d64: status 200, as if the answer had reached the client
    assert (row["status"], row["error"], row["client_disconnected"]) == (499, "client_closed_request", True)
    assert row["cost_nanos"] > 0  # the upstream answered and was paid: the cost stays


async def test_a_stream_its_client_left_is_labelled_as_such(proxy: RunningProxy, fake) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.base_url + "/chat/completions", json={**CHAT, "stream": True},
                                headers=SLOW_STREAM) as response:
            await response.content.readline()  # the stream has started; then the client goes
    row = await wait_for_row(proxy)
    assert (row["status"], row["error"], row["client_disconnected"]) == (200, "client_disconnected", True)


def test_deploy_files_leave_the_drain_room() -> None:
    """The container's stop timeout covers the grace, the cut requests' recording and the ledger flush."""
    from proxy.in_flight import CUT_SECONDS

    grace = yaml.safe_load((ROOT / "deploy" / "k8s" / "configmap.yaml").read_text())
    config = yaml.safe_load(grace["data"]["thriftgate.yaml"])
    k8s_grace = config["server"]["shutdown_grace_seconds"]
    pod = yaml.safe_load((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= k8s_grace + 2 * CUT_SECONDS + 10
    compose_config = yaml.safe_load((ROOT / "deploy" / "thriftgate.yaml").read_text())
    compose_grace = compose_config.get("server", {}).get("shutdown_grace_seconds", 30)
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    for name in ("thriftgate-1", "thriftgate-2"):
        stop = compose["services"][name]["stop_grace_period"]
        assert int(stop.rstrip("s")) >= compose_grace + 2 * CUT_SECONDS + 10, name
