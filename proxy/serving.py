"""One server process from start to stop: bind, say where it listens, serve until a signal, drain, clean up.

The port is bound before anything starts, so a port in use or a host that is not this machine's is one
line (CannotListen) and nothing else. A first SIGTERM or SIGINT stops accepting connections and lets the
requests in flight finish, for at most `server.shutdown_grace_seconds`; a second one cuts them at once;
every cut request is still settled and recorded (`proxy_shutdown`), and after either the app's clean-up
writes every pending ledger row. Further signals change nothing: only SIGKILL stops the flush.
"""

import asyncio
import errno
import gc
import logging
import signal
import socket
from collections.abc import Callable

from aiohttp import web

from proxy.in_flight import CUT_SECONDS, InFlight

log = logging.getLogger("thriftgate")
BACKLOG = 1024
# Python's default (700) collects the young generation every few requests, each time walking the objects of
# every request in flight; 10,000 cuts the instructions per request by ~5% at 32 connections
# (bench/instructions.py) for at most that many young objects waiting a little longer for a collection.
YOUNG_GC_THRESHOLD = 10_000


class CannotListen(Exception):
    """str() is one line for the operator: what failed and how to choose otherwise."""


def bind(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Listening sockets for every address `host` has (as asyncio's create_server binds them)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise CannotListen(f"cannot listen on {host}:{port}: {host!r} is not a host name or address ({reason}); "
                           "choose another with --host") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise CannotListen(_bind_failure(host, port, exc)) from None
    return sockets


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {host}:{port}: the port is in use; choose another with --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}:{port}: {host} is not an address of this machine; choose another with --host"
    if exc.errno == errno.EACCES:
        return (f"cannot listen on {host}:{port}: not allowed (ports below 1024 need privileges); "
                "choose another with --port")
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def addresses(sockets: list[socket.socket]) -> list[str]:
    """host:port of each socket, as bound (a port of 0 is the one the system chose)."""
    shown = []
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        shown.append(f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}")
    return shown


async def serve(app: web.Application, sockets: list[socket.socket], *, in_flight: InFlight, grace: float,
                announce: Callable[[], None] = lambda: None) -> None:
    """Serve on `sockets` until a signal; `announce` runs once they accept connections."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=CUT_SECONDS)
    loop = asyncio.get_running_loop()
    stop, hurry = asyncio.Event(), asyncio.Event()
    received = 0

    def on_signal() -> None:
        nonlocal received
        received += 1
        if received == 1:
            stop.set()
        elif received == 2:
            log.warning("second signal: cutting the %d requests in flight now; the ledger is still written",
                        len(in_flight))
            hurry.set()
        else:
            log.warning("stopping: writing the ledger (only SIGKILL stops that, and loses its last rows)")

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    try:
        await runner.setup()  # starts the app's services: the store, the ledger, the upstream client
        try:
            for sock in sockets:
                await web.SockSite(runner, sock).start()
            # What start-up built (config, price tables, tokenizers, the app) lives as long as the process:
            # out of the collector's generations, the collections that requests' allocations trigger skip it.
            gc.freeze()
            _, older, oldest = gc.get_threshold()
            gc.set_threshold(YOUNG_GC_THRESHOLD, older, oldest)
            announce()
            await stop.wait()
            for site in list(runner.sites):
                await site.stop()  # no new connections
            runner.server.pre_shutdown()  # idle kept-alive connections close; busy ones after their request
            log.info("stopping: waiting up to %gs for %d requests in flight (a second signal cuts them now)",
                     grace, len(in_flight))
            if cut := await in_flight.drain(grace, hurry):
                log.warning("cut %d requests still running; each is recorded as proxy_shutdown", cut)
        finally:
            await runner.cleanup()  # closes connections, then the app's clean-up writes the ledger
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
