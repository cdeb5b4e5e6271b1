"""Typed keys under which make_app keeps its services (aiohttp's AppKey: no globals)."""

from aiohttp import web

from proxy.stages.auth import Auth
from proxy.stages.budget import Budgets
from proxy.config import Config
from proxy.accounting.ledger import BatchedLedger
from proxy.in_flight import InFlight
from proxy.accounting.metrics import Metrics
from proxy.accounting.pricing import PriceTable
from proxy.control.reload import Reloader
from proxy.routing.service import Routing
from proxy.store import Store
from proxy.stages.upstream import UpstreamClient

CONFIG = web.AppKey("config", Config)
LEDGER = web.AppKey("ledger", BatchedLedger)
METRICS = web.AppKey("metrics", Metrics)
PRICES = web.AppKey("prices", PriceTable)
UPSTREAMS = web.AppKey("upstreams", UpstreamClient)
ROUTING = web.AppKey("routing", Routing)
READY = web.AppKey("ready", dict)
RELOADER = web.AppKey("reloader", Reloader)
STORE = web.AppKey("store", Store)
AUTH = web.AppKey("auth", Auth)
BUDGETS = web.AppKey("budgets", Budgets | None)
IN_FLIGHT = web.AppKey("in_flight", InFlight)
