"""`thriftgate serve` and `check-config`: running the proxy (one process, or --workers sharing the port)."""

import argparse
import functools
import json
import logging
import logging.handlers
import queue
import sys
from pathlib import Path
from urllib.parse import urlsplit

from proxy import config as config_module
from proxy import config_loading
from proxy.control.config import workers_problem


def add_commands(commands: argparse._SubParsersAction) -> None:
    serve_command = commands.add_parser("serve", help="run the proxy")
    serve_command.add_argument("--config", help="YAML config file (default: embedded defaults)")
    serve_command.add_argument("--host", help="listen address (overrides server.host)")
    serve_command.add_argument("--port", type=int, help="listen port (overrides server.port)")
    serve_command.add_argument("--workers", type=positive_int, default=1,
                               help="processes sharing the port; /metrics adds them all up (default 1)")
    serve_command.set_defaults(run=serve)

    check = commands.add_parser("check-config", help="validate a config and print the resolved settings")
    check.add_argument("file")
    check.set_defaults(run=check_config)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def serve(args: argparse.Namespace) -> int:
    config = config_loading.load(args.config)
    server = config.server.model_copy(
        update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    )
    config = config.model_copy(update={"server": server})
    refuse_self_loop(config)
    if args.workers > 1 and (problem := workers_problem(config.store, config.budgets, config.auth)):
        raise config_module.ConfigError(f"--workers {args.workers}: {problem}")
    serve_one = functools.partial(serve_process, config_path=Path(args.config) if args.config else None)
    if args.workers > 1:
        from proxy import serving
        from proxy.workers import supervise

        try:  # once here, rather than once in every worker
            for sock in serving.bind(config.server.host, config.server.port, reuse_port=True):
                sock.close()
        except serving.CannotListen as exc:
            print(f"thriftgate: {exc}", file=sys.stderr)
            return 1
        configure_logging(config)
        return supervise(config, args.workers, serve_one)
    serve_one(config)
    return 0


def serve_process(
    config: config_module.Config, metrics_dir: str | None = None, *, config_path: Path | None = None
) -> None:
    """One server process: the whole proxy, or with a metrics_dir one of the --workers sharing the port."""
    import asyncio

    from proxy import serving
    from proxy.app import make_app
    from proxy.appkeys import IN_FLIGHT

    server = config.server
    try:
        sockets = serving.bind(server.host, server.port, reuse_port=metrics_dir is not None)  # workers share it
    except serving.CannotListen as exc:
        print(f"thriftgate: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    access_writer = configure_logging(config)
    for warning in config_module.warnings(config):
        logging.getLogger("thriftgate").warning("%s", warning)
    try:
        import uvloop
    except ImportError:
        uvloop = None

    def announce() -> None:
        logging.getLogger("thriftgate").info(
            "thriftgate listening on %s -> %s", ", ".join(f"http://{a}/v1" for a in serving.addresses(sockets)),
            ", ".join(f"{u.name}={u.base_url}" for u in config.upstreams),
        )

    try:
        app = make_app(config, metrics_dir=metrics_dir, config_path=config_path, handle_sighup=True)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
            runner.run(serving.serve(app, sockets, in_flight=app[IN_FLIGHT], grace=server.shutdown_grace_seconds,
                                     announce=announce))
    finally:
        for sock in sockets:
            sock.close()
        if access_writer is not None:
            access_writer.stop()  # writes every queued line


def refuse_self_loop(config: config_module.Config) -> None:
    """OPENAI_BASE_URL is often exported for the app *and* read by us: catch it pointing at ourselves."""
    local = {"localhost", "127.0.0.1", "::1", "0.0.0.0", config.server.host}
    for upstream in config.upstreams:
        parts = urlsplit(upstream.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.hostname in local and port == config.server.port:
            raise config_module.ConfigError(
                f"upstreams[{upstream.name}].base_url: {upstream.base_url} is this proxy's own address; "
                "set OPENAI_BASE_URL for the proxy to the real provider (or configure upstreams)"
            )


def configure_logging(config: config_module.Config) -> logging.handlers.QueueListener | None:
    """Access lines go through a queue to a writer thread: the event loop never waits on stdout."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    access = logging.getLogger("thriftgate.access")
    access.propagate = False
    if not config.server.access_log or access.handlers:
        return None
    writer = logging.StreamHandler(sys.stdout)
    writer.setFormatter(logging.Formatter("%(message)s"))
    lines: queue.SimpleQueue = queue.SimpleQueue()
    access.addHandler(logging.handlers.QueueHandler(lines))
    listener = logging.handlers.QueueListener(lines, writer)
    listener.start()
    return listener


def check_config(args: argparse.Namespace) -> int:
    config = config_loading.load(args.file)
    from proxy.accounting.pricing import PriceTable, default_pricing_path

    files = list(config.pricing.files or [default_pricing_path()])
    overrides = {m: o.model_dump(exclude_none=True) for m, o in config.pricing.overrides.items()}
    table = PriceTable.load(files, overrides)
    print(json.dumps(config_module.masked_summary(config), indent=2))
    for warning in config_module.warnings(config):
        print(f"# warning: {warning}", file=sys.stderr)
    print(f"# {args.file}: valid; {len(table.models)} priced models", file=sys.stderr)
    return 0
