"""`thriftgate demo`: what thriftgate is for, in a minute, on /ui, /metrics and the dashboards.

It starts a simulated provider (proxy.demo.provider) and sends a mixed workload (proxy.demo.workload) at
--rps for --duration seconds (0: until Ctrl-C). On its own it also runs a proxy on --port with its own
ledger (never the real one) and a config that puts it to work: two teams with keys and a budget each, a
route sending summaries to a cheaper model, an exact cache for the questions asked again and again, and a
concise policy with a holdout that measures what it saves. The page stays up after the traffic, until
Ctrl-C; Ctrl-C at any time prints the summary and stops cleanly, the ledger written.

With --target the traffic goes to proxies already running (the compose stack's load balancer), which must
forward to this provider: start them with OPENAI_BASE_URL=http://<demo host>:<--upstream-port>/v1.
"""

import argparse
import asyncio
import random
import signal
import sys

from aiohttp import web

from proxy import serving
from proxy.config_loading import validate
from proxy.control.keys import key_hash
from proxy.demo.provider import SimulatedProvider
from proxy.demo.workload import drive

# Demo keys, declared in the demo proxy's config by their hash like any key: team -> key.
TEAM_KEYS = {"support": "tg-demo-support-0000000000000000000", "research": "tg-demo-research-000000000000000000"}
DEMO_POLICIES = [
    {"name": "summaries-to-mini", "type": "route", "to": "gpt-4o-mini",
     "match": {"models": ["gpt-4o"], "last_message_regex": "(?i)summari[sz]e"}},
    {"name": "faq-cache", "type": "exact_cache", "ttl": "1h"},
    {"name": "be-brief", "type": "concise", "holdout": 0.2},
]
DEMO_BUDGETS = [{"scope": "team:support", "usd": 5, "window": "day"},
                {"scope": "team:research", "usd": "0.5", "window": "day"}]


def run(args: argparse.Namespace) -> int:
    if args.requests is not None and args.requests < 1:
        raise SystemExit("thriftgate demo: --requests must be 1 or more")
    if args.rps <= 0 or args.duration < 0:
        raise SystemExit("thriftgate demo: --rps must be above 0 and --duration 0 or more")
    try:
        asyncio.run(_run(args))
    except serving.CannotListen as exc:
        print(f"thriftgate: {exc}", file=sys.stderr)
        return 1
    return 0


async def _run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    # The provider draws as answers are served, in an order timing decides: its own generator, so the traffic
    # a seed gives stays the same however the answers interleave.
    provider_rng = random.Random(rng.getrandbits(64))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runners: list[web.AppRunner] = []
    try:
        provider_url = await _serve(runners, SimulatedProvider(provider_rng).app(), args.upstream_host, args.upstream_port)
        print(f"simulated provider: {provider_url}/v1", flush=True)
        target = args.target or await _serve(runners, _demo_proxy(args, provider_url), args.host, args.port)
        print(f"proxy: {target}/v1   page: {target}/ui   metrics: {target}/metrics", flush=True)
        tally = await drive(target.rstrip("/"), rps=args.rps, duration=args.duration, rng=rng, stop=stop,
                            team_keys=None if args.target else TEAM_KEYS, requests=args.requests)
        print(tally.line(), flush=True)
        if not args.target and not stop.is_set():
            print(f"the page stays up at {target}/ui; Ctrl-C to stop", flush=True)
            await stop.wait()
    finally:
        for runner in reversed(runners):  # the proxy first: it writes its ledger on the way out
            await runner.cleanup()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if not args.target:
        print(f"spend: thriftgate spend --ledger {args.ledger}   savings: thriftgate savings --ledger {args.ledger}",
              flush=True)


def _demo_proxy(args: argparse.Namespace, provider_url: str) -> web.Application:
    from proxy.app import make_app  # the proxy's whole stack loads only when the demo runs one

    config = validate({
        "server": {"host": args.host, "port": args.port, "access_log": False},
        "upstreams": [{"name": "simulated", "base_url": provider_url + "/v1", "api_key_env": None}],
        "ledger": {"path": args.ledger},
        "auth": {"keys": [{"id": f"{team}-app", "team": team, "sha256": key_hash(key)}
                          for team, key in TEAM_KEYS.items()]},
        "budgets": DEMO_BUDGETS,
        "pricing": {"unpriced": "serve"},  # the teams' llama-3.1-70b calls fill the unpriced panels
        "policies": DEMO_POLICIES,
    })
    return make_app(config)


async def _serve(runners: list[web.AppRunner], app: web.Application, host: str, port: int) -> str:
    sockets = serving.bind(host, port)  # before the app starts: a port in use is one line, nothing to undo
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    runners.append(runner)
    for sock in sockets:
        await web.SockSite(runner, sock).start()
    return f"http://{serving.addresses(sockets)[0]}"
