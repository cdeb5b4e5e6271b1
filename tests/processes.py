"""Running thriftgate as a real process in tests: the CLI, free ports, waiting until it is ready."""

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import redis.asyncio as redis

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def thriftgate(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`thriftgate ARGS` (as `python -m proxy`), run to the end."""
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})},
    )


async def wait_ready(session: aiohttp.ClientSession, url: str, within: float = 30.0) -> None:
    """Until /readyz answers 200: a loaded machine takes seconds just to import the proxy in each process."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            async with session.get(url + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"thriftgate at {url} did not become ready")


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


PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


class PostgresServer:
    """A PostgreSQL server of the test's own (initdb, pg_ctl) on a free port, that it may kill and start
    again with its data. initdb refuses root, so the server runs as the postgres user when we are root."""

    def __init__(self) -> None:
        import tempfile

        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="thriftgate-pg-"))
        self.data = self.directory / "data"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.directory, "postgres")
        self.process: subprocess.Popen | None = None

    def dsn(self, password: str | None = None) -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        subprocess.run([*self._as, str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"],
                       check=True, capture_output=True, timeout=120)

    async def start(self) -> None:
        with (self.directory / "log").open("ab") as log:
            self.process = subprocess.Popen(
                [*self._as, str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
                 "-k", str(self.directory), "-c", "fsync=off"],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        import asyncpg

        for _ in range(300):
            try:
                conn = await asyncpg.connect(self.dsn(), timeout=1)
            except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
                await asyncio.sleep(0.05)
                continue
            await conn.close()
            return
        raise AssertionError("postgres did not start: " + (self.directory / "log").read_text()[-2000:])

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends: a crash, not a shutdown."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            postmaster = int(pid_file.read_text().split()[0])
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(postmaster), signal.SIGKILL)  # its backends are in its process group
            for _ in range(200):  # a new postmaster needs the old one's shared memory released
                if not Path(f"/proc/{postmaster}").exists():
                    break
                time.sleep(0.02)
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(10)

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
