"""Failures on purpose, and what thriftgate makes of them: the figures of docs/routing.md and docs/benchmarks.md.

    python -m bench.chaos [--requests 300] [--seconds 6] [--scenarios flaky,dead,stall,cut,budget]

Run from the repository root; needs Redis on 127.0.0.1:6379 for `budget` (keys under a prefix of its own,
removed at the end). Fake upstreams (tests/fake_upstream.py) play seeded faults of their own; proxies are
in-process apps built from config as `thriftgate serve` builds them (two of them share Redis for `budget`,
as two replicas would). Scenarios:
  flaky   a primary failing 30% with 429/500/503 beside a healthy secondary: client-visible errors
  dead    a primary always 503: how many requests reach it per cooldown window once it has cooled down
  stall   a deployment whose first token never comes: time to the fallback's first byte, against the timeout
  cut     streams cut after 10 events: each ends with an error event, is truncated in the ledger, and costs
          exactly the prompt and the tokens the client received
  budget  two replicas on Redis, a failing primary with billed stalls and a dearer fallback: spend vs budget
"""

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.accounting.money import NANOS_PER_USD
from proxy.accounting.pricing import PriceTable, default_pricing_path
from proxy.accounting.usage import Usage
from proxy.app import make_app
from proxy.appkeys import LEDGER
from proxy.config_loading import validate
from tests.fake_upstream import FAKE_API_KEY, FakeUpstream
from tests.shared import REDIS_URL, delete_prefix

KEY_ENV = "THRIFTGATE_CHAOS_UPSTREAM_KEY"
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Name three rivers."}], "max_tokens": 60}
PRICES = PriceTable.load([default_pricing_path()], {})


def upstream(name: str, fake: FakeUpstream, models: tuple[str, ...] = ("gpt-4o",), **extra: Any) -> dict:
    return {"name": name, "base_url": fake.base_url, "api_key_env": KEY_ENV, "models": list(models), **extra}


class Proxy:
    """One in-process thriftgate on a free port."""

    def __init__(self, config: dict, work: Path) -> None:
        config = {"server": {"access_log": False}, "ledger": {"path": str(work / f"{uuid.uuid4().hex}.db")}, **config}
        self.app = make_app(validate(config), registry=CollectorRegistry())
        self.runner = web.AppRunner(self.app, access_log=None)

    async def __aenter__(self) -> "Proxy":
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()

    async def rows(self) -> list[dict]:
        return await self.app[LEDGER].recent(100_000)


async def chat(sdk: openai.AsyncOpenAI, stream: bool, body: dict = CHAT) -> tuple[str | None, dict, float, str]:
    """(error or None, headers, seconds to first byte, text) of one call."""
    started = time.perf_counter()
    first = None
    text = []
    try:
        raw = await sdk.chat.completions.with_raw_response.create(**body, stream=stream)
        if not stream:
            return None, dict(raw.headers), time.perf_counter() - started, raw.parse().choices[0].message.content
        async for chunk in raw.parse():
            first = first or time.perf_counter() - started
            text.extend(c.delta.content or "" for c in chunk.choices)
        return None, dict(raw.headers), first, "".join(text)
    except openai.APIError as err:
        return f"{type(err).__name__}: {getattr(err, 'code', None)}", {}, first or 0.0, "".join(text)


def client(proxy: Proxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-client", max_retries=0, timeout=30)


async def flaky(args: argparse.Namespace, work: Path) -> None:
    async with FakeUpstream() as primary, FakeUpstream() as secondary:
        primary.faults(rate=0.3, choices=("429", "500", "503"), seed=11, retry_after="1")
        config = {"upstreams": [upstream("primary", primary), upstream("secondary", secondary)],
                  "routing": {"backoff": {"initial": "50ms"}}}
        async with Proxy(config, work) as proxy, client(proxy) as sdk:
            limit = asyncio.Semaphore(16)

            async def one(index: int):
                async with limit:
                    return await chat(sdk, stream=index % 2 == 1)

            results = await asyncio.gather(*(one(i) for i in range(args.requests)))
    errors = Counter(error for error, *_ in results if error)
    attempts = Counter(headers.get("x-thriftgate-attempts") for error, headers, *_ in results if not error)
    print(f"flaky   {args.requests} requests (half streamed), primary failing 30% (429/500/503), secondary healthy:"
          f" {sum(errors.values())} client-visible errors {dict(errors) or ''}; attempts per request"
          f" {dict(sorted(attempts.items()))}; primary answered {primary.served} times, secondary {secondary.served}")


async def dead(args: argparse.Namespace, work: Path) -> None:
    cooldown = 1.0
    async with FakeUpstream() as primary, FakeUpstream() as secondary:
        primary.faults(rate=1.0, choices=("503",))
        config = {"upstreams": [upstream("primary", primary), upstream("secondary", secondary)],
                  "routing": {"cooldown": {"after_failures": 3, "for": f"{cooldown}s"}, "strategy": "least_busy"}}
        async with Proxy(config, work) as proxy, client(proxy) as sdk:
            hits: list[float] = []
            started = time.perf_counter()
            served = 0
            errors = 0
            while time.perf_counter() - started < args.seconds:
                before = primary.served
                batch = await asyncio.gather(*(chat(sdk, stream=False) for _ in range(8)))
                errors += sum(1 for error, *_ in batch if error)
                hits += [time.perf_counter() - started] * (primary.served - before)
                served += len(batch)
                await asyncio.sleep(0.02)
    first_cooled = hits[2] if len(hits) > 2 else 0.0
    windows = Counter(int((hit - first_cooled) // cooldown) for hit in hits[3:])
    print(f"dead    {served} requests over {args.seconds:g} s, primary always 503, cooldown {cooldown:g} s after 3"
          f" failures: {errors} client-visible errors; the primary got {len(hits)} requests: 3 before it cooled"
          f" down, then per cooldown window {[windows.get(w, 0) for w in range(int(args.seconds / cooldown))]}"
          f" (at most {max(windows.values(), default=0)})")


async def stall(args: argparse.Namespace, work: Path) -> None:
    timeout = 0.5
    async with FakeUpstream() as stalled, FakeUpstream() as healthy:
        stalled.faults(rate=1.0, choices=("stall",))
        config = {"upstreams": [upstream("stalled", stalled), upstream("healthy", healthy, ("gpt-4o-mini",))],
                  "routing": {"timeouts": {"first_token": f"{timeout}s"}, "retries": 0,
                              "cooldown": {"after_failures": 1000},  # every request meets the stall
                              "fallbacks": [{"from": "gpt-4o", "to": ["gpt-4o-mini"]}]}}
        async with Proxy(config, work) as proxy, client(proxy) as sdk:
            results = [await chat(sdk, stream=True) for _ in range(20)]
    firsts = sorted(first for error, _, first, _ in results if not error)
    errors = sum(1 for error, *_ in results if error)
    print(f"stall   20 streams to a deployment that never sends a first token, first_token {timeout:g} s, fallback"
          f" gpt-4o-mini: {errors} errors; first byte after {firsts[0]:.3f} s (min) / {firsts[len(firsts) // 2]:.3f} s"
          f" (median) / {firsts[-1]:.3f} s (max) = {firsts[-1] / timeout:.2f}x the timeout")


async def cut(args: argparse.Namespace, work: Path) -> None:
    async with FakeUpstream() as fake:
        fake.faults(rate=1.0, choices=("cut:10",))
        config = {"upstreams": [upstream("cut", fake)]}
        async with Proxy(config, work) as proxy, client(proxy) as sdk:
            results = [await chat(sdk, stream=True) for _ in range(50)]
            rows = await proxy.rows()
    ended_with_error = sum(1 for error, *_ in results if error and "upstream_stream_cut" in error)
    delivered = sum(fake.token_count(text) for *_, text in results)
    billed = sum(PRICES.cost_nanos("gpt-4o", Usage(prompt_tokens=row["prompt_tokens"],
                                                   completion_tokens=fake.token_count(text)))
                 for row, (*_, text) in zip(sorted(rows, key=lambda r: r["ts"]), results))
    recorded = sum(row["cost_nanos"] for row in rows)
    print(f"cut     50 streams cut after 10 events: {ended_with_error}/50 ended with an error event (never [DONE]),"
          f" {sum(row['truncated'] for row in rows)}/50 truncated in the ledger; {delivered} tokens reached the"
          f" clients, the ledger has {sum(row['completion_tokens'] for row in rows)}; spend {recorded} n$ ="
          f" {billed} n$ billed for the prompts and what was delivered: {'equal' if recorded == billed else 'DIFFER'}")


async def budget(args: argparse.Namespace, work: Path) -> None:
    prefix = f"thriftgate-chaos:{uuid.uuid4().hex}:"
    hold = PRICES.estimate_nanos("gpt-4o", 20, 60)
    usd = Decimal(20 * hold) / NANOS_PER_USD
    body = {**CHAT, "model": "gpt-4o-mini", "max_tokens": 60}
    try:
        async with FakeUpstream() as primary, FakeUpstream() as secondary, FakeUpstream() as fallback:
            primary.faults(rate=0.6, choices=("429", "500", "stall"), seed=5, retry_after="0.05")
            secondary.faults(rate=0.6, choices=("503", "stall"), seed=6)
            config = {
                "upstreams": [upstream("a", primary, ("gpt-4o-mini",)), upstream("b", secondary, ("gpt-4o-mini",)),
                              upstream("rest", fallback, ("*",))],
                "routing": {"retries": 1, "timeouts": {"first_token": "300ms", "total": "2s"},
                            "fallbacks": [{"from": "gpt-4o-mini", "to": ["gpt-4o"]}]},
                "store": {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": prefix},
                "budgets": [{"scope": "global", "usd": str(usd), "window": "day"}],
            }
            async with Proxy(config, work) as one, Proxy(config, work) as two, client(one) as a, client(two) as b:
                limit = asyncio.Semaphore(8)

                async def call(index: int):
                    async with limit:
                        return await chat((a, b)[index % 2], stream=index % 4 < 2, body=body)

                results = await asyncio.gather(*(call(i) for i in range(args.requests)))
                rows = [*await one.rows(), *await two.rows()]
    finally:
        await delete_prefix(REDIS_URL, prefix)
    spent = sum(row["cost_nanos"] or 0 for row in rows)
    errors = Counter(error for error, *_ in results if error)
    refused = sum(count for error, count in errors.items() if "budget" in error)
    print(f"budget  {args.requests} requests on two replicas sharing Redis, gpt-4o-mini failing 60% (billed stalls"
          f" among them), falling back to gpt-4o (16x its price): {len(rows)} ledger rows"
          f" ({sum(1 for row in rows if row['parent_id'])} failed attempts,"
          f" {sum(1 for row in rows if row['fallback'])} fallbacks), {refused} refused by the budget, other errors"
          f" {dict(errors) if len(errors) > bool(refused) else 'none'}; spent"
          f" ${Decimal(spent) / NANOS_PER_USD} of ${usd} ({spent / (usd * NANOS_PER_USD):.1%}):"
          f" {'never over' if spent <= usd * NANOS_PER_USD else 'OVER THE BUDGET'}")


SCENARIOS = {"flaky": flaky, "dead": dead, "stall": stall, "cut": cut, "budget": budget}


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests of flaky and budget (default 300)")
    parser.add_argument("--seconds", type=float, default=6.0, help="how long dead runs (default 6)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated of {', '.join(SCENARIOS)}")
    args = parser.parse_args()
    os.environ[KEY_ENV] = FAKE_API_KEY
    with tempfile.TemporaryDirectory(prefix="thriftgate-chaos-") as work:
        for name in args.scenarios.split(","):
            await SCENARIOS[name](args, Path(work))


if __name__ == "__main__":
    asyncio.run(main())
