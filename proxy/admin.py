"""Admin API over the ledger: one request by id, and spend grouped by a dimension."""

import time

from aiohttp import web

from proxy.appkeys import LEDGER
from proxy.errors import BadRequest, NotFound
from proxy.ledger import parse_since


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/admin/requests/{request_id}", request_record)
    router.add_get("/admin/spend", spend)


async def request_record(request: web.Request) -> web.Response:
    request_id = request.match_info["request_id"]
    record = await request.app[LEDGER].get(request_id)
    if record is None:
        raise NotFound(f"No request with id '{request_id}' in the ledger.", param="request_id")
    return web.json_response(record)


async def spend(request: web.Request) -> web.Response:
    by = request.query.get("by", "model")
    since = _since(request.query.get("since"))
    try:
        rows = await request.app[LEDGER].spend(by=by, since=since)
    except ValueError as exc:
        raise BadRequest(str(exc), param="by") from None
    return web.json_response({"by": by, "since": since, "rows": rows})


def _since(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return parse_since(text, time.time())
    except ValueError as exc:
        raise BadRequest(str(exc), param="since") from None
