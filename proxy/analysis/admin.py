"""`/admin/whatif`: the what-if report of `thriftgate whatif` over the ledger (this replica's SQLite file, or
the fleet's PostgreSQL), guarded like every /admin route. GET takes `model=FROM=TO` (repeatable), `by`,
`since`, `batch=1`, `latency_tolerant_tags`, `format=json|csv`; POST takes the same as JSON plus a price
table (`prices: {models: {...}}`) and candidate `policies: [...]` inline: the server never reads a file a
request names.
"""

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from proxy.accounting.ledger import parse_since
from proxy.accounting.ledger_backends import open_reader
from proxy.accounting.price_files import PricingError
from proxy.accounting.pricing import PriceTable
from proxy.analysis import render
from proxy.analysis.batching import DEFAULT_TOLERANT_TAGS, batch_whatif
from proxy.analysis.records import spend_rows
from proxy.analysis.whatif import Scenario, WhatIfError, whatif
from proxy.appkeys import CONFIG, LEDGER, PRICES
from proxy.config import ConfigError
from proxy.errors import BadRequest
from proxy.policies import registry
from proxy.routes import GuardedRouter

DEFAULT_SINCE = "30d"


def add_routes(router: GuardedRouter) -> None:
    router.add_get("/admin/whatif", whatif_get)
    router.add_post("/admin/whatif", whatif_post)


async def whatif_get(request: web.Request) -> web.Response:
    query = request.query
    options = {"model_map": model_pairs(query.getall("model", [])), "by": query.get("by", "model"),
               "since": query.get("since", DEFAULT_SINCE), "batch": query.get("batch") in ("1", "true"),
               "latency_tolerant_tags": query.get("latency_tolerant_tags"), "format": query.get("format", "json")}
    return await _answer(request, options)


async def whatif_post(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("The body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    model_map = body.get("model_map", {})
    if not isinstance(model_map, dict) or not all(isinstance(v, str) for v in (*model_map, *model_map.values())):
        raise BadRequest("'model_map' must map model names to model names.", param="model_map")
    return await _answer(request, {**body, "model_map": model_map, "since": body.get("since", DEFAULT_SINCE)})


async def report(request: web.Request, options: Mapping[str, Any]) -> dict:
    """The report for these options over the running ledger; BadRequest names the option at fault."""
    app = request.app
    since, until = _since(str(options["since"])), time.time()
    current = app[PRICES]
    scenario = _scenario(options)
    tags = options.get("latency_tolerant_tags")
    tags = DEFAULT_TOLERANT_TAGS if not tags else [t.strip() for t in str(tags).split(",") if t.strip()]
    by = str(options.get("by") or "model")
    await app[LEDGER].flush()  # this replica's own requests are in what is read
    ledger = app[CONFIG].ledger

    def run() -> dict:
        # Its own reader, on this thread: an SQLite connection, or PostgreSQL's on a private event loop.
        with open_reader(ledger) as reader:
            rows: Callable[[], Iterable[dict]] = lambda: spend_rows(reader, since, until)  # noqa: E731
            if options.get("batch"):
                return batch_whatif(rows(), current, by=by, tolerant_tags=tags, since=since, until=until)
            return whatif(rows, scenario, current, by=by, since=since, until=until)

    try:
        return await asyncio.to_thread(run)  # a month of rows: off the event loop
    except WhatIfError as exc:
        raise BadRequest(str(exc), code="whatif_invalid") from None


async def _answer(request: web.Request, options: Mapping[str, Any]) -> web.Response:
    fmt = options.get("format", "json")
    if fmt not in ("json", "csv"):
        raise BadRequest("'format' must be json or csv.", param="format")
    result = await report(request, options)
    if fmt == "json":
        return web.json_response(result)
    columns = render.BATCH_COLUMNS if options.get("batch") else render.WHATIF_COLUMNS
    return web.Response(text=render.render(result, columns, "csv") + "\n", content_type="text/csv")


def model_pairs(values: list[str]) -> dict[str, str]:
    pairs = {}
    for value in values:
        source, sep, target = value.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise BadRequest(f"'model' must be FROM=TO, e.g. gpt-4o=gpt-4o-mini; got {value!r}.", param="model")
        pairs[source.strip()] = target.strip()
    return pairs


def _scenario(options: Mapping[str, Any]) -> Scenario:
    prices = None
    if options.get("prices") is not None:
        table = options["prices"]
        if not isinstance(table, dict) or not isinstance(table.get("models"), dict):
            raise BadRequest("'prices' must be a price table: {\"models\": {name: {input, output, ...}}}.",
                             param="prices")
        try:
            prices = PriceTable.load([], table["models"], overrides_origin="prices.models")
        except PricingError as exc:
            raise BadRequest(str(exc), param="prices") from None
    policies = ()
    if options.get("policies") is not None:
        try:
            policies = registry.parse(options["policies"], "policies")
        except ConfigError as exc:
            raise BadRequest(str(exc), param="policies") from None
    return Scenario(options["model_map"], prices, "the posted price table" if prices else "", policies)


def _since(text: str) -> float:
    try:
        return parse_since(text, time.time())
    except ValueError as exc:
        raise BadRequest(str(exc), param="since") from None
