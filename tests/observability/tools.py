"""What the observability tests share: the outside tools they run, and a known workload.

A missing tool fails its test with the command that installs it: a skipped test would count as a
passing one that never ran. .ci/run installs them all.
"""

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import aiohttp
import orjson
import pytest

from proxy.exchange import Exchange
from proxy.policies.base import PolicyConfig

ROOT = Path(__file__).resolve().parents[2]


def require(tool: str, debian_package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"`{tool}` is not installed; run: apt-get install -y {debian_package}  (.ci/run does)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# One round of traffic: (method, path, body, headers). Priced chat whole and streamed, embeddings, a
# model with no price, an upstream failure, prompt-cache reads and writes and a pass-through, so that
# every panel has data.
CHAT = {"messages": [{"role": "user", "content": "Name three rivers."}]}
Request = tuple[str, str, dict | None, dict[str, str]]
ROUND: tuple[Request, ...] = (
    *[("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", **CHAT}, {})] * 2,
    ("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", **CHAT}, {"x-thriftgate-language": "fr"}),
    *[("POST", "/v1/chat/completions", {"model": "gpt-4o", "stream": True, **CHAT}, {})] * 2,
    ("POST", "/v1/embeddings", {"model": "text-embedding-3-small", "input": "three rivers"}, {}),
    ("POST", "/v1/chat/completions", {"model": "llama-3.1-70b", **CHAT}, {}),  # no price
    ("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", **CHAT}, {"x-fake-fault": "500"}),
    ("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", **CHAT},  # the prompt cache read and written
     {"x-fake-cached-tokens": "6", "x-fake-cache-write-tokens": "2"}),
    ("POST", "/v1/chat/completions", {"model": "fake-503", **CHAT}, {}),  # always fails; WORKLOAD falls back
    ("GET", "/v1/models", None, {}),  # passed through
)


class _FragileSettings(PolicyConfig):
    type: Literal["fragile"]


class _FragilePolicy:
    """Raises after every answer it is given, as a bug would: counted as a policy error, the answer goes out."""

    def __init__(self, settings: _FragileSettings, services: object) -> None:
        pass

    async def on_response(self, ex: Exchange) -> None:
        raise RuntimeError("a policy bug, on purpose")


# A policy type for tests only (monkeypatch it into proxy.policies.registry.REGISTRY): no real type fails on purpose.
FRAGILE = SimpleNamespace(Settings=_FragileSettings, Policy=_FragilePolicy)

# Policies, budgets and a fallback for the savings, budget and health dashboards, and POLICY_ROUND, which
# exercises them (ROUND has the fallback): a
# concise policy with a holdout (estimated savings once both arms have 20 requests: 60 a round make
# fewer than 20 in either arm over two rounds a one-in-10^12 draw), a route and a cascade (exact savings;
# one cascade escalates), an exact cache (lookups, hits), a policy that fails, a day and a month budget
# being spent and one that no request fits.
WORKLOAD = {
    "policies": [
        {"name": "be-brief", "type": "concise", "match": {"tags": ["brief"]}, "holdout": 0.5},
        {"name": "mini-for-summaries", "type": "route", "match": {"tags": ["summary"]}, "to": "gpt-4o-mini"},
        {"name": "cheap-first", "type": "cascade", "match": {"tags": ["extraction"]}, "try": "gpt-4o-mini"},
        {"name": "fragile", "type": "fragile", "match": {"tags": ["fragile"]}},
        {"name": "same-answer", "type": "exact_cache", "match": {"tags": ["repeat"]}},
    ],
    "routing": {"fallbacks": [{"from": "fake-503", "to": ["gpt-4o-mini"]}]},
    "pricing": {"unpriced": "serve"},  # unpriced traffic (and fake-503, which falls back) under the global usd budget
    "budgets": [
        {"scope": "global", "usd": 1000, "window": "day"},
        {"scope": "model:gpt-4o*", "usd": 500, "window": "month"},
        {"scope": "user:capped", "usd": "0.000001", "window": "day"},
    ],
}


def _tagged(tag: str, model: str = "gpt-4o", **body: object) -> Request:
    return "POST", "/v1/chat/completions", {"model": model, **CHAT, **body}, {"x-thriftgate-tags": tag}


POLICY_ROUND: tuple[Request, ...] = (
    *[_tagged("brief", "gpt-4o-mini")] * 60,
    *[_tagged("summary")] * 2,  # routed to gpt-4o-mini
    *[_tagged("extraction")] * 2,  # gpt-4o-mini's answer is accepted
    _tagged("extraction", max_tokens=5),  # gpt-4o-mini's answer is cut short: escalated to gpt-4o
    _tagged("fragile", "gpt-4o-mini"),
    *[_tagged("repeat", "gpt-4o-mini")] * 2,  # a miss, stored; then hits once the write (off the request path) is done
    ("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", **CHAT}, {"x-thriftgate-user": "capped"}),  # 429
)


async def send_round(url: str, requests: Sequence[Request] = ROUND) -> list[str]:
    """One round through the proxy at `url`, each request on a new connection (so that workers sharing
    a port all get some); returns the request ids the proxy gave."""
    ids = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": "Bearer sk-client"}) as session:
        for method, path, body, headers in requests:
            async with session.request(method, url + path, json=body, headers=headers) as response:
                await response.read()
                ids.append(response.headers["x-thriftgate-request-id"])
    return ids


BATCH_LINES = [{"custom_id": f"q{n}", "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "max_tokens": 20, **CHAT}} for n in range(3)]


async def send_batch(url: str) -> None:
    """A Batch API job through the proxy at `url`, retrieved until it ends, and its lines priced (they are
    priced off the retrieve's path: this waits for /metrics to count them)."""
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-client"}) as session:
        before = await _batch_lines(session, url)
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", b"".join(orjson.dumps(line) + b"\n" for line in BATCH_LINES), filename="batch.jsonl")
        async with session.post(url + "/v1/files", data=form) as response:
            file_id = (await response.json())["id"]
        body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        async with session.post(url + "/v1/batches", json=body) as response:
            batch_id = (await response.json())["id"]
        for _ in range(4):
            async with session.get(f"{url}/v1/batches/{batch_id}") as response:
                await response.read()

        async def priced() -> bool:
            return await _batch_lines(session, url) == before + len(BATCH_LINES)

        await eventually(priced, what=f"the lines of {batch_id} to be priced")


async def _batch_lines(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("thriftgate_batch_lines_total{"))


async def eventually(check, *, timeout: float = 20.0, what: str) -> None:
    """Polls the coroutine function `check` until it returns true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def running(*command: str, **options) -> AsyncIterator[asyncio.subprocess.Process]:
    """A subprocess for the block; killed at its end unless it has exited."""
    process = await asyncio.create_subprocess_exec(*command, **options)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def answers(session: aiohttp.ClientSession, url: str) -> bool:
    """True once `url` answers 200; False while nothing listens there yet."""
    try:
        async with session.get(url) as response:
            return response.status == 200
    except aiohttp.ClientConnectionError:
        return False
