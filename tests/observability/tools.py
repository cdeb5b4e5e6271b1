"""What the observability tests share: the outside tools they run, and a known workload.

A missing tool fails its test with the command that installs it: a skipped test would count as a
passing one that never ran. .ci/run installs them all.
"""

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

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
# model with no price, an upstream failure and a pass-through, so that every panel has data.
CHAT = {"messages": [{"role": "user", "content": "Name three rivers."}]}
ROUND: tuple[tuple[str, str, dict | None, dict[str, str]], ...] = (
    *[("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", **CHAT}, {})] * 3,
    *[("POST", "/v1/chat/completions", {"model": "gpt-4o", "stream": True, **CHAT}, {})] * 2,
    ("POST", "/v1/embeddings", {"model": "text-embedding-3-small", "input": "three rivers"}, {}),
    ("POST", "/v1/chat/completions", {"model": "llama-3.1-70b", **CHAT}, {}),  # no price
    ("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", **CHAT}, {"x-fake-fault": "500"}),
    ("GET", "/v1/models", None, {}),  # passed through
)


async def send_round(url: str) -> list[str]:
    """One round through the proxy at `url`, each request on a new connection (so that workers sharing
    a port all get some); returns the request ids the proxy gave."""
    ids = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": "Bearer sk-client"}) as session:
        for method, path, body, headers in ROUND:
            async with session.request(method, url + path, json=body, headers=headers) as response:
                await response.read()
                ids.append(response.headers["x-thriftgate-request-id"])
    return ids


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
