"""`thriftgate demo`: real traffic through the proxy in a minute, for /ui, /metrics and the dashboards.

It starts a simulated provider (proxy.demo.provider) and sends a mixed workload at --rps for
--duration seconds (0: until Ctrl-C): several chat models, streamed and not, embeddings, a model
with no price, and the provider's occasional 429 and 500.

On its own it also runs a proxy on --port with its own ledger (never the real one). With --target
the traffic goes to proxies already running (the compose stack's load balancer), which must forward
to this provider: start them with OPENAI_BASE_URL=http://<demo host>:<--upstream-port>/v1.
"""

import argparse
import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from proxy.config_loading import validate
from proxy.demo.provider import SimulatedProvider

MAX_IN_FLIGHT = 256  # a stalled proxy must not pile up requests without bound
SYSTEM_PROMPT = "You are a helpful assistant for an operations team. Answer briefly and precisely."
QUESTIONS = (
    "Summarise yesterday's incident report in three bullet points.",
    "Which rivers flow through more than three countries?",
    "Draft a polite reminder about the unpaid invoice from March.",
    "Explain the difference between p50 and p99 latency to a new engineer.",
    "Translate 'the deployment finished without errors' into French and German.",
    "What should a runbook for a failing cache contain?",
)


@dataclass(frozen=True, slots=True)
class Scenario:
    model: str
    endpoint: str  # chat | embeddings
    stream: bool
    weight: int


SCENARIOS = (
    Scenario("gpt-4o-mini", "chat", stream=False, weight=28),
    Scenario("gpt-4o-mini", "chat", stream=True, weight=14),
    Scenario("gpt-4o", "chat", stream=True, weight=12),
    Scenario("gpt-4.1-mini", "chat", stream=False, weight=10),
    Scenario("o3-mini", "chat", stream=False, weight=6),
    Scenario("claude-sonnet-4-5", "chat", stream=True, weight=7),
    Scenario("text-embedding-3-small", "embeddings", stream=False, weight=15),
    Scenario("llama-3.1-70b", "chat", stream=False, weight=5),  # no price: shows on the unpriced panels
    Scenario("", "models", stream=False, weight=3),  # GET /v1/models: passed through, unpriced
)


def run(args: argparse.Namespace) -> int:
    if args.rps <= 0 or args.duration < 0:
        raise SystemExit("thriftgate demo: --rps must be above 0 and --duration 0 or more")
    try:
        asyncio.run(_run(args))
    except KeyboardInterrupt:
        pass  # _run's cleanup already ran: the ledger is flushed
    return 0


async def _run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    runners: list[web.AppRunner] = []
    try:
        provider_url = await _serve(runners, SimulatedProvider(rng).app(), args.upstream_host, args.upstream_port)
        print(f"simulated provider: {provider_url}/v1", flush=True)
        target = args.target or await _serve(runners, _demo_proxy(args, provider_url), args.host, args.port)
        print(f"proxy: {target}/v1   page: {target}/ui   metrics: {target}/metrics", flush=True)
        statuses = await _drive(target.rstrip("/"), rps=args.rps, duration=args.duration, rng=rng)
    finally:
        for runner in reversed(runners):  # the proxy first: it flushes its ledger on the way out
            await runner.cleanup()
    print(f"sent {sum(statuses.values())} requests: "
          + ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items())), flush=True)
    if not args.target:
        print(f"spend so far: thriftgate spend --ledger {args.ledger}", flush=True)


def _demo_proxy(args: argparse.Namespace, provider_url: str) -> web.Application:
    from proxy.app import make_app  # the proxy's whole stack loads only when the demo runs one

    config = validate({
        "server": {"host": args.host, "port": args.port, "access_log": False},
        "upstreams": [{"name": "simulated", "base_url": provider_url + "/v1", "api_key_env": None}],
        "ledger": {"path": args.ledger},
    })
    return make_app(config)


async def _serve(runners: list[web.AppRunner], app: web.Application, host: str, port: int) -> str:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    runners.append(runner)
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    return f"http://{bound_host}:{bound_port}"


async def _drive(target: str, *, rps: float, duration: float, rng: random.Random) -> Counter[str]:
    """Poisson arrivals at `rps` for `duration` seconds, then waits for the requests still running."""
    statuses: Counter[str] = Counter()
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    deadline = time.monotonic() + duration if duration else float("inf")
    headers = {"Authorization": "Bearer sk-demo"}  # the simulated provider takes any key
    async with aiohttp.ClientSession(headers=headers) as session:
        async with asyncio.TaskGroup() as requests:
            while time.monotonic() < deadline:
                await asyncio.sleep(rng.expovariate(rps))
                await slots.acquire()
                scenario = rng.choices(SCENARIOS, weights=[s.weight for s in SCENARIOS])[0]
                requests.create_task(_send(session, target, scenario, rng, statuses, slots))
    return statuses


async def _send(session: aiohttp.ClientSession, target: str, scenario: Scenario, rng: random.Random,
                statuses: Counter[str], slots: asyncio.Semaphore) -> None:
    try:
        if scenario.endpoint == "models":
            async with session.get(f"{target}/v1/models") as response:
                await response.read()
        else:
            async with session.post(f"{target}/v1/{_PATHS[scenario.endpoint]}", json=_body(scenario, rng)) as response:
                await response.read()  # a stream too: read to its end, as a client would
        statuses[str(response.status)] += 1
    except aiohttp.ClientError as exc:
        statuses[type(exc).__name__] += 1
    finally:
        slots.release()


_PATHS = {"chat": "chat/completions", "embeddings": "embeddings"}


def _body(scenario: Scenario, rng: random.Random) -> dict:
    question = rng.choice(QUESTIONS)
    if scenario.endpoint == "embeddings":
        return {"model": scenario.model, "input": [question, rng.choice(QUESTIONS)], "encoding_format": "base64"}
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    return {"model": scenario.model, "messages": messages, "stream": scenario.stream}
