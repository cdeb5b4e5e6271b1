"""How a request ended early, for the ledger (the outcomes are listed in docs/deploy.md): its client left,
before its answer started or part way through a stream, or this proxy cut it while stopping."""

from aiohttp import web

from proxy.exchange import Exchange

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left before the answer
SERVICE_UNAVAILABLE = 503  # a request this proxy cut because it was stopping, before its answer started


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def client_left(ex: Exchange, *, answer_started: bool) -> None:
    """A stream the client left part way keeps its status (labelled by `label`); a client that left before its
    answer started gets 499, whatever the upstream answered (its cost, if any, is still recorded)."""
    ex.client_disconnected = True
    if not answer_started:
        ex.status, ex.error_code = CLIENT_CLOSED_REQUEST, ex.error_code or "client_closed_request"


def cut_at_shutdown(ex: Exchange) -> None:
    ex.error_code, ex.status = "proxy_shutdown", ex.status or SERVICE_UNAVAILABLE


def label(ex: Exchange) -> None:
    """Before the record: a stream its client left part way says so in the ledger's `error` column too."""
    if ex.client_disconnected and ex.error_code is None:
        ex.error_code = "client_disconnected"
