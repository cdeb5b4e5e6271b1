"""Processes the fleet tests run: thriftgate replicas (`python -m proxy serve`) and a redis-server of
their own (never the shared one), on free ports."""

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as redis
import yaml

from tests.processes import ROOT, free_port, wait_ready


class Replica:
    def __init__(self, config: dict[str, Any], directory: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.config_path = directory / f"replica-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.env = env
        self.log = directory / f"replica-{self.port}.log"  # its stderr, for a failing test to show
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, session: aiohttp.ClientSession) -> None:
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "proxy", "serve", "--config", str(self.config_path), "--port", str(self.port),
                cwd=ROOT, env=self.env, stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )
        await wait_ready(session, self.url)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 30)


class RedisServer:
    """A redis-server on a free port that keeps its data across a stop and a start (append-only file)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--dir", str(self.directory), "--daemonize", "no",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        try:
            for _ in range(200):
                try:
                    if await client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    await asyncio.sleep(0.02)
            raise AssertionError("redis-server did not start")
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()  # a clean shutdown: the append-only file is complete
            await asyncio.wait_for(self.process.wait(), 10)
