"""Config reload on SIGHUP and POST /admin/reload: the policies, upstreams and routing change, in-flight
requests don't (and deployments keep their health).

An invalid new config is refused with its reason and the running one stays. Other sections are read
and compared, and reported as needing a restart when they differ.
"""

import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web

from proxy import config as config_module
from proxy import config_loading
from proxy.config import Config
from proxy.errors import BadRequest
from proxy.stages.hooks import build_chain
from proxy.accounting.metrics import Metrics
from proxy.pipeline import Pipeline
from proxy.policies.base import Services
from proxy.routing.service import Routing
from proxy.accounting.savings import HoldoutStats

log = logging.getLogger("thriftgate.reload")
_RELOADED = ("policies", "upstreams", "routing")


class Reloader:
    def __init__(self, path: Path | None, config: Config, pipeline: Pipeline, services: Services,
                 metrics: Metrics, holdout: HoldoutStats, routing: Routing) -> None:
        self._path = path
        self._routing = routing
        self.config = config
        self._pipeline = pipeline
        self._services = services
        self._metrics = metrics
        self._holdout = holdout  # kept across reloads: the evidence does not reset
        self._lock = asyncio.Lock()

    async def reload(self) -> dict:
        """Raises ConfigError (the running config stays) or returns what changed."""
        if self._path is None:
            raise config_module.ConfigError("thriftgate was started without a config file: nothing to reload")
        async with self._lock:
            new = await asyncio.to_thread(config_loading.load, self._path)
            chain = build_chain(new.policies, self._services, self._metrics, self._holdout)
            restart_needed = [
                section for section in Config.model_fields
                if section not in _RELOADED and getattr(new, section) != getattr(self.config, section)
            ]
            self._routing.configure(new)
            self._pipeline.replace_policies(chain)
            if self._services.lookups is not None:
                self._services.lookups.operating = chain.operating  # the chain's that serves now, only
            self.config = self.config.model_copy(update={section: getattr(new, section) for section in _RELOADED})
        names = [p.name for p in new.policies]
        log.info("reloaded %s: policies %s; needs a restart to apply: %s", self._path, names, restart_needed or "none")
        return {"reloaded": str(self._path), "policies": names, "restart_needed": restart_needed}


def install_sighup(reloader: Reloader) -> None:
    """On SIGHUP, reload; a failure is logged and the running config stays."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task] = set()

    async def reload_logged() -> None:
        try:
            await reloader.reload()
        except config_module.ConfigError as exc:
            log.error("reload refused, the running config stays:\n%s", exc)

    def on_signal() -> None:
        task = loop.create_task(reload_logged())
        pending.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGHUP, on_signal)


def reload_route(key: "web.AppKey[Reloader]") -> web.RouteDef:
    async def reload(request: web.Request) -> web.Response:
        try:
            return web.json_response(await request.app[key].reload())
        except config_module.ConfigError as exc:
            raise BadRequest(f"The new config was refused; the running one stays.\n{exc}", code="invalid_config") from None

    return web.post("/admin/reload", reload)
