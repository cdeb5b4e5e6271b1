"""Composition root: make_app(config) builds every service, keeps it under a typed AppKey and wires
the routes. Nothing is global: tests build a fresh app with its own registry.
"""

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.analysis import admin as whatif_admin
from proxy.batch.endpoints import BatchApi
from proxy.stages.count import prompt_counter
from proxy.control import admin, ui
from proxy.stages.auth import Auth
from proxy.stages.budget import build_budgets
from proxy.appkeys import (AUTH, BUDGETS, CONFIG, IN_FLIGHT, LEDGER, METRICS, PRICES, READY, RELOADER, ROUTING,
                           STORE, UPSTREAMS)
from proxy.config import Config
from proxy.control.config import configured_teams
from proxy.accounting.ledger_backends import open_ledger
from proxy.accounting.metrics import Metrics, multiprocess_exposition
from proxy.dialects.ingress import INGRESS
from proxy.stages.hooks import build_chain
from proxy.in_flight import InFlight
from proxy.pipeline import Pipeline
from proxy.policies.base import Services
from proxy.accounting.pricing import PriceTable, default_pricing_path
from proxy.stages.record import Recorder
from proxy.control.reload import Reloader, install_sighup, reload_route
from proxy.accounting.savings import HoldoutStats
from proxy.stages.settle import Settler
from proxy.policies.side_calls import SideCalls
from proxy.routing import admin as routing_admin
from proxy.routing.attempts import Attempts
from proxy.routing.service import Routing
from proxy.routes import GuardedRouter, shaped_errors, unrouted
from proxy.store.backends import open_health_store, open_store
from proxy.accounting.tokens import TokenCounter
from proxy.stages.upstream import UpstreamClient
from proxy.lookup import admin as lookup_admin
from proxy.lookup.embedders import LocalModels
from proxy.lookup.service import LOOKUPS, build_lookups
from proxy.lookup.service import running as running_lookups



def make_app(
    config: Config, *, registry: CollectorRegistry | None = None, metrics_dir: str | None = None,
    config_path: Path | None = None, handle_sighup: bool = False, clock: Callable[[], float] = time.time,
    local_models: LocalModels | None = None,
) -> web.Application:
    """metrics_dir: the PROMETHEUS_MULTIPROC_DIR of `serve --workers N`, whose /metrics adds up every worker.
    config_path: the file `POST /admin/reload` and SIGHUP (with handle_sighup) read again.
    clock: unix time for budget windows and routing's cooldowns and minutes (tests move it across a window's end)."""
    prices = PriceTable.load(
        list(config.pricing.files or [default_pricing_path()]),
        {model: override.model_dump(exclude_none=True) for model, override in config.pricing.overrides.items()},
    )
    upstreams = UpstreamClient(config.upstreams, config.routing.timeouts)
    ledger = open_ledger(config.ledger)
    metrics = Metrics(
        registry or CollectorRegistry(), models=prices.models | _configured_models(config),
        teams=configured_teams(config.auth, config.budgets), tags=config.tags.metrics,
        exposition=multiprocess_exposition(metrics_dir) if metrics_dir else None,
    )
    tokens = TokenCounter()
    recorder = Recorder(ledger, metrics, access_log_enabled=config.server.access_log,
                        log_prompts=config.server.log_prompts)
    settler = Settler(tokens, prices)
    store = open_store(config.store)
    auth = Auth(config.auth, store)
    budgets = build_budgets(config, store=store, keys_possible=auth.keys_possible, prices=prices, metrics=metrics,
                            clock=clock)
    routing = Routing(config, upstreams, open_health_store(config.store), metrics, clock=clock)
    attempts = Attempts(routing, upstreams, recorder, settler, prices, metrics, budgets)
    lookups = build_lookups(config, upstreams=upstreams, prices=prices, tokens=tokens, metrics=metrics, clock=clock,
                            models=local_models)  # local_models: loaded embedding models to share (tests)
    services = Services(prices=prices, tokens=tokens, side_calls=SideCalls(routing, attempts, settler, recorder, budgets),
                        lookups=lookups, routing=routing)
    holdout = HoldoutStats()
    chain = build_chain(config.policies, services, metrics, holdout)
    lookups.operating = chain.operating
    in_flight = InFlight()
    pipeline = Pipeline(
        config, tokens=tokens, prices=prices, settler=settler, upstreams=upstreams, routing=routing, attempts=attempts,
        recorder=recorder, policies=chain, in_flight=in_flight, auth=auth, budgets=budgets,
    )
    reloader = Reloader(config_path, config, pipeline, services, metrics, holdout, routing)

    app = web.Application(client_max_size=config.server.max_body_bytes)  # no middlewares: see proxy/routes.py
    app[CONFIG] = config
    app[LEDGER] = ledger
    app[METRICS] = metrics
    app[PRICES] = prices
    app[UPSTREAMS] = upstreams
    app[ROUTING] = routing
    app[READY] = {"ready": False}
    app[RELOADER] = reloader
    app[STORE] = store
    app[AUTH] = auth
    app[BUDGETS] = budgets
    app[IN_FLIGHT] = in_flight
    if handle_sighup:
        app.on_startup.append(lambda app: _install_sighup(app[RELOADER]))
    app.cleanup_ctx.append(_running_services)
    app[LOOKUPS] = lookups
    app.cleanup_ctx.append(running_lookups)  # after the upstreams start; drains cache writes before they close

    for path in INGRESS:
        app.router.add_post(path, pipeline.priced(path))
    batch_api = BatchApi(auth=auth, upstreams=upstreams, budgets=budgets, store=store, ledger=ledger, metrics=metrics,
                         prices=prices, count_prompt=prompt_counter(tokens),
                         default_output=config.budgets_default_max_output_tokens)
    batch_api.add_routes(app.router, pipeline.handled)  # before the catch-all
    app.cleanup_ctx.append(batch_api.running)
    app.router.add_route("*", "/v1/{tail:.*}", pipeline.any_v1_path)  # encoded, dotted, or passed through
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    server = config.server
    metrics_guard = auth.metrics_guard(server.metrics_auth, server.metrics_token, server.metrics_token_env)
    app.router.add_get("/metrics", shaped_errors(metrics_guard(metrics_page)))
    # Every /admin/ route behind the master key.
    admin_router = GuardedRouter(app.router, lambda path, method, handler: shaped_errors(
        auth.admin_guard(path, method, handler)))
    admin.add_routes(admin_router)
    whatif_admin.add_routes(admin_router)
    lookup_admin.add_routes(admin_router)
    routing_admin.add_routes(admin_router)
    admin_router.add_routes([reload_route(RELOADER)])
    ui.add_routes(app.router, guard=lambda handler: shaped_errors(auth.page_guard(handler)))
    app.router.add_route("*", "/{tail:.*}", unrouted)  # last: what no route above serves
    return app


async def _install_sighup(reloader: Reloader) -> None:
    install_sighup(reloader)


def _configured_models(config: Config) -> frozenset[str]:
    """Models the config names are worth their own metric label even when unpriced."""
    named = {model for policy in config.policies for model in getattr(policy, "models_named", tuple)()}
    named |= {pattern for upstream in config.upstreams for pattern in upstream.models if "*" not in pattern}
    named |= {model for entry in config.routing.fallbacks for model in (entry.from_, *entry.to)}
    return frozenset(named)


async def _running_services(app: web.Application) -> AsyncIterator[None]:
    await app[STORE].start()  # an unreachable Redis does not stop the start: /readyz says so
    await app[LEDGER].start()
    await app[UPSTREAMS].start()
    await app[ROUTING].start()
    app[READY]["ready"] = True
    yield
    app[READY]["ready"] = False
    await app[ROUTING].close()
    await app[UPSTREAMS].close()
    if app[BUDGETS] is not None:
        await app[STORE].flush()  # the last settlements, and the budget alerts they pass
        await app[BUDGETS].close()  # budget alerts on their way
    await app[STORE].close()  # writes what waited for Redis, if it is back
    await app[LEDGER].close()  # flushes every pending spend record


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """503 while starting, or while Redis is down and budgeted requests are refused (store.on_failure: closed)."""
    ready = request.app[READY]["ready"]
    store = request.app[STORE].health()
    refusing = (not store.reachable and request.app[BUDGETS] is not None
                and request.app[CONFIG].store.on_failure == "closed")
    ledger = request.app[LEDGER].health()  # a ledger that is down spools its rows: degraded, still serving
    status = ("starting" if not ready else "store_unavailable" if refusing
              else "ready" if store.reachable and ledger["reachable"] else "degraded")
    body = {"status": status, "store": {"backend": store.backend, "reachable": store.reachable,
                                        "pending_settlements": store.pending_settlements}, "ledger": ledger}
    return web.json_response(body, status=200 if ready and not refusing else 503)


async def metrics_page(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})
