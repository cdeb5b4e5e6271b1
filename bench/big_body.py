"""How long small requests wait while a big request body is parsed and counted (issue #10, item 9).

    python -m bench.big_body [--mb 15] [--rounds 3]

One proxy with a token budget and a policy (both need the prompt counted), the fake upstream on a thread
of its own. Each round sends one big chat request (refused by the budget once counted, so it costs only
the parse and the count) while small requests go one after another; it reports the small requests' worst
and median latency while the big one ran. Both ways side by side in one run: the big body on a thread
(as shipped) and on the event loop (the threshold raised past it, as on 0d52d64).
"""

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.stages import request_body
from proxy.app import make_app
from proxy.config_loading import validate
from tests.fake_upstream import FakeUpstream

SMALL = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


async def round_trip(url: str, big: bytes) -> tuple[float, list[float]]:
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        sending = asyncio.ensure_future(session.post(url, data=big, headers={"Content-Type": "application/json"}))
        while not sending.done():
            t = time.perf_counter()
            async with session.post(url, json=SMALL) as response:
                await response.read()
            latencies.append(time.perf_counter() - t)
        (await sending).release()
        return time.perf_counter() - started, latencies


async def measure(mb: float, rounds: int, off_loop_bytes: int, upstream: str, ledger: Path) -> dict:
    request_body.OFF_LOOP_BYTES = off_loop_bytes
    config = validate({
        "server": {"access_log": False, "max_body_bytes": int((mb + 1) * 1024 * 1024)},
        "upstreams": [{"name": "fake", "base_url": upstream, "api_key_env": None}],
        "ledger": {"path": str(ledger)},
        "budgets": [{"scope": "global", "tokens_per_minute": 10**6}],
        "policies": [{"type": "concise", "match": {"min_prompt_tokens": 1}}],
    })
    runner = web.AppRunner(make_app(config, registry=CollectorRegistry()), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
    text = "The quick brown fox jumps over the lazy dog. " * int(mb * 1_000_000 / 45)
    big = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}).encode()
    try:
        results = [await round_trip(url, big) for _ in range(rounds)]
    finally:
        await runner.cleanup()
    worst = max(max(latencies) for _, latencies in results)
    median = statistics.median(latency for _, latencies in results for latency in latencies)
    return {"big_s": statistics.median(r[0] for r in results), "small_worst_ms": worst * 1000,
            "small_median_ms": median * 1000, "small_served": sum(len(r[1]) for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    shipped = request_body.OFF_LOOP_BYTES
    with FakeUpstream() as fake, tempfile.TemporaryDirectory() as tmp:
        for label, threshold in (("on a thread (shipped)", shipped), ("on the event loop", 1 << 40)):
            row = asyncio.run(measure(args.mb, args.rounds, threshold, fake.base_url, Path(tmp) / f"{threshold}.db"))
            print(f"{label:24} big request {row['big_s']:.2f} s; small requests while it ran: "
                  f"{row['small_served']} served, median {row['small_median_ms']:.1f} ms, "
                  f"worst {row['small_worst_ms']:.0f} ms")


if __name__ == "__main__":
    main()
