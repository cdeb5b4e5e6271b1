"""Processes the fleet tests run: thriftgate replicas (`python -m proxy serve`) and a redis-server of
their own (never the shared one), on free ports."""

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
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
