"""Admin API over the ledger: one request by id, and spend grouped by a dimension."""

import time

from aiohttp import web

from proxy.control import keys_api
from proxy.appkeys import LEDGER, STORE
from proxy.errors import BadRequest, NotFound, ServiceUnavailable
from proxy.accounting.ledger import parse_since
from proxy.store import SPEND_DIMENSIONS, StoreUnavailable, fleet_spend
from proxy.routes import GuardedRouter


def add_routes(router: GuardedRouter) -> None:
    router.add_get("/admin/requests/{request_id}", request_record)
    router.add_get("/admin/spend", spend)
    keys_api.add_routes(router)


async def request_record(request: web.Request) -> web.Response:
    request_id = request.match_info["request_id"]
    record = await request.app[LEDGER].get(request_id)
    if record is None:
        raise NotFound(f"No request with id '{request_id}' in the ledger.", param="request_id")
    return web.json_response(record)


async def spend(request: web.Request) -> web.Response:
    """source=fleet: every replica's spend from the shared store's daily totals (the default with Redis);
    source=ledger: this replica's own ledger, any grouping, to the second."""
    by = request.query.get("by", "model")
    since = _since(request.query.get("since"))
    store = request.app[STORE]
    ledger = request.app[LEDGER]
    fleet_default = store.shared and not ledger.fleet and by in SPEND_DIMENSIONS  # a fleet's ledger knows more
    source = request.query.get("source") or ("fleet" if fleet_default else "ledger")
    try:
        if source == "fleet":
            rows, since = await fleet_spend(store, by, since, time.time())
        elif source == "ledger":
            rows = await ledger.spend(by=by, since=since)
        else:
            raise BadRequest("'source' must be fleet or ledger.", param="source")
    except ValueError as exc:
        raise BadRequest(str(exc), param="by") from None
    except StoreUnavailable as exc:
        raise ServiceUnavailable(f"{exc} Ask with source=ledger for this replica's own spend.") from None
    return web.json_response({"by": by, "since": since, "source": source, "rows": rows})


def _since(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return parse_since(text, time.time())
    except ValueError as exc:
        raise BadRequest(str(exc), param="since") from None
