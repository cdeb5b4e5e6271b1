"""A real Prometheus (Debian's) for a test: scraping given targets every second, with given rule files."""

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import yaml

from tests.observability.tools import answers, eventually, free_port, require, running

SCRAPE_INTERVAL = "1s"


class Prometheus:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self._session = session

    async def query(self, expr: str) -> list[dict]:
        """The instant vector (or scalar, as one sample) of `expr` now; a PromQL error fails with its message."""
        async with self._session.get(self.url + "/api/v1/query", params={"query": expr}) as response:
            answer = await response.json()
        assert answer["status"] == "success", f"{expr}\n{answer.get('error')}"
        data = answer["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    async def finite_values(self, expr: str) -> list[float]:
        values = [float(sample["value"][1]) for sample in await self.query(expr)]
        return [value for value in values if math.isfinite(value)]

    async def scalar(self, expr: str) -> float | None:
        values = await self.finite_values(expr)
        return values[0] if values else None

    async def firing_alerts(self) -> set[str]:
        async with self._session.get(self.url + "/api/v1/alerts") as response:
            alerts = (await response.json())["data"]["alerts"]
        return {alert["labels"]["alertname"] for alert in alerts if alert["state"] == "firing"}


@asynccontextmanager
async def running_prometheus(
    workdir: Path, targets: list[str], rule_files: list[Path] = ()
) -> AsyncIterator[Prometheus]:
    binary = require("prometheus", "prometheus")
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": "thriftgate", "static_configs": [{"targets": targets}]}],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    log_path = workdir / "prometheus.log"
    command = (binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
               f"--web.listen-address={url.removeprefix('http://')}", "--log.level=warn")
    with open(log_path, "wb") as log:
        async with running(*command, stdout=log, stderr=log) as process, aiohttp.ClientSession() as session:

            async def ready() -> bool:
                assert process.returncode is None, f"Prometheus exited (see {log_path})"
                return await answers(session, url + "/-/ready")

            await eventually(ready, what=f"Prometheus to start (see {log_path})")
            yield Prometheus(url, session)
