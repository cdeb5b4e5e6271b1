"""GET /admin/upstreams (guarded like every /admin route): each deployment, whether it is in rotation, why not,
until when, and what this replica sees of its load."""

import time

from aiohttp import web

from proxy.appkeys import ROUTING
from proxy.routing.service import Routing
from proxy.routes import GuardedRouter


def add_routes(router: GuardedRouter) -> None:
    router.add_get("/admin/upstreams", upstreams)


async def upstreams(request: web.Request) -> web.Response:
    return web.json_response(report(request.app[ROUTING]))


def report(routing: Routing) -> dict:
    now = routing.clock()
    health, loads = routing.health, routing.router.loads
    rows = []
    for config in routing.upstreams:
        state = health.states.get(config.name)
        load = loads[config.name].this_minute(now)
        if state is None or state.usable(now):
            status, until = "up", None
        elif state.probe and state.until <= now:
            status, until = "probing", None
        else:
            status, until = ("cooling_down" if state.probe else "resting"), _iso(state.until)
        rows.append({
            "name": config.name, "base_url": config.base_url, "models": list(config.models), "model": config.model,
            "weight": config.weight, "rpm": config.rpm, "tpm": config.tpm,
            "state": status, "until": until, "failures_in_a_row": state.failures if state else 0,
            "in_flight": load.in_flight, "latency_ms": round(load.latency * 1000, 1) if load.latency else None,
            # counted for the deployments with limits of their own
            "requests_this_minute": load.requests if config.rpm or config.tpm else None,
            "tokens_this_minute": load.tokens if config.tpm else None,
        })
    settings = routing.settings
    return {"strategy": settings.strategy, "health_shared": health.shared, "retries": settings.retries,
            "cooldown": settings.cooldown.model_dump(by_alias=True), "upstreams": rows}


def _iso(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))
