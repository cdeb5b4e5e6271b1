"""The demo's traffic: a mix of models, streamed and not, embeddings, a model with no price, questions that
repeat (an exact cache answers them) and questions to summarise (a route sends them to a cheaper model), from
two teams. Poisson arrivals at --rps until the duration ends or a stop is asked for."""

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp

MAX_IN_FLIGHT = 256  # a stalled proxy must not pile up requests without bound
STOP_WAIT_SECONDS = 3.0  # at the end, or after Ctrl-C, how long requests in flight may take before they are cut
SYSTEM_PROMPT = "You are a helpful assistant for an operations team."
# Asked again and again, word for word: what an exact cache is for.
FAQ = (
    "What should a runbook for a failing cache contain?",
    "Explain the difference between p50 and p99 latency to a new engineer.",
    "Translate 'the deployment finished without errors' into French and German.",
)
FAQ_SHARE = 0.3
CACHE_SHOW_TRIES = 10
QUESTIONS = (
    "Summarise yesterday's incident report about {topic} in three bullet points.",
    "Which rivers flow through more than three countries? Start with {topic}.",
    "Draft a polite reminder about the unpaid invoice for {topic}.",
    "Summarize the customer feedback on {topic} for the weekly review.",
    "What are the trade-offs of caching {topic}?",
)
TOPICS = ("the billing service", "the Danube", "March", "the search index", "the mobile app", "our CDN",
          "the data warehouse", "the Rhine", "the login page", "the nightly batch")


@dataclass(frozen=True, slots=True)
class Scenario:
    model: str
    endpoint: str  # chat | embeddings | models
    stream: bool
    weight: int


SCENARIOS = (
    Scenario("gpt-4o-mini", "chat", stream=False, weight=24),
    Scenario("gpt-4o-mini", "chat", stream=True, weight=12),
    Scenario("gpt-4o", "chat", stream=False, weight=12),
    Scenario("gpt-4o", "chat", stream=True, weight=10),
    Scenario("gpt-4.1-mini", "chat", stream=False, weight=10),
    Scenario("o3-mini", "chat", stream=False, weight=6),
    Scenario("claude-sonnet-4-5", "chat", stream=True, weight=7),
    Scenario("text-embedding-3-small", "embeddings", stream=False, weight=12),
    Scenario("llama-3.1-70b", "chat", stream=False, weight=4),  # no price: shows on the unpriced panels
    Scenario("", "models", stream=False, weight=3),  # GET /v1/models: passed through, unpriced
)
_PATHS = {"chat": "chat/completions", "embeddings": "embeddings"}


@dataclass
class Tally:
    statuses: Counter[str]
    cache_hits: int = 0

    def line(self) -> str:
        sent = sum(self.statuses.values())
        shown = ", ".join(f"{count} x {status}" for status, count in sorted(self.statuses.items()))
        return f"sent {sent} requests: {shown or 'none'}; {self.cache_hits} answered from the cache"


async def drive(target: str, *, rps: float, duration: float, rng: random.Random, stop: asyncio.Event,
                team_keys: dict[str, str] | None, requests: int | None = None) -> Tally:
    """Requests until `duration` seconds pass (0: until `stop`) or `requests` were sent; then waits a little
    for those in flight. `team_keys`: team -> thriftgate key, each request sent with one (None: anonymous).
    Every random draw is made here, in order, so a seed and a request count give the same traffic."""
    tally = Tally(Counter())
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    in_flight: set[asyncio.Task] = set()
    async with aiohttp.ClientSession() as session:
        if team_keys:  # the demo's own proxy, whose exact cache is worth showing
            await _ask_twice(session, target, _headers(rng, team_keys), tally, stop)
        deadline = time.monotonic() + duration if duration else float("inf")
        sent = 0
        while not stop.is_set() and time.monotonic() < deadline and (requests is None or sent < requests):
            pause = min(rng.expovariate(rps), max(deadline - time.monotonic(), 0))
            try:
                await asyncio.wait_for(stop.wait(), pause)
                break
            except TimeoutError:
                pass
            await slots.acquire()
            scenario = rng.choices(SCENARIOS, weights=[s.weight for s in SCENARIOS])[0]
            headers = _headers(rng, team_keys)
            body = None if scenario.endpoint == "models" else _body(scenario, rng)
            task = asyncio.create_task(_send(session, target, scenario, body, headers, tally, slots))
            sent += 1
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            _, late = await asyncio.wait(in_flight, timeout=STOP_WAIT_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
    return tally


async def _ask_twice(session: aiohttp.ClientSession, target: str, headers: dict[str, str], tally: Tally,
                     stop: asyncio.Event) -> None:
    """One question asked again until the exact cache answers it: random traffic on a loaded machine may
    repeat nothing before the cache has written its first answer (the write happens after the reply)."""
    body = {"model": SCENARIOS[0].model, "stream": False,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": FAQ[0]}]}
    for _ in range(CACHE_SHOW_TRIES):
        if stop.is_set():
            return
        try:
            async with session.post(f"{target}/v1/chat/completions", json=body, headers=headers) as response:
                await response.read()
        except aiohttp.ClientError as exc:
            tally.statuses[type(exc).__name__] += 1
            return
        tally.statuses[str(response.status)] += 1
        if response.headers.get("x-thriftgate-lookup", "").endswith("-hit"):
            tally.cache_hits += 1
            return
        await asyncio.sleep(0.1)


def _headers(rng: random.Random, team_keys: dict[str, str] | None) -> dict[str, str]:
    if not team_keys:
        return {"Authorization": "Bearer sk-demo"}  # the simulated provider takes any key
    first, *others = team_keys.values()
    key = first if not others or rng.random() < 0.7 else rng.choice(others)
    return {"Authorization": f"Bearer {key}"}


async def _send(session: aiohttp.ClientSession, target: str, scenario: Scenario, body: dict | None,
                headers: dict[str, str], tally: Tally, slots: asyncio.Semaphore) -> None:
    try:
        if scenario.endpoint == "models":
            request = session.get(f"{target}/v1/models", headers=headers)
        else:
            request = session.post(f"{target}/v1/{_PATHS[scenario.endpoint]}", json=body,
                                   headers=headers)
        async with request as response:
            await response.read()  # a stream too: read to its end, as a client would
        tally.statuses[str(response.status)] += 1
        tally.cache_hits += response.headers.get("x-thriftgate-lookup", "").endswith("-hit")
    except asyncio.CancelledError:
        tally.statuses["cut at stop"] += 1
        raise
    except aiohttp.ClientError as exc:
        tally.statuses[type(exc).__name__] += 1
    finally:
        slots.release()


def _body(scenario: Scenario, rng: random.Random) -> dict:
    if rng.random() < FAQ_SHARE:
        question = rng.choice(FAQ)
    else:
        question = rng.choice(QUESTIONS).format(topic=rng.choice(TOPICS)) + f" (ticket {rng.randrange(10**6)})"
    if scenario.endpoint == "embeddings":
        return {"model": scenario.model, "input": [question, rng.choice(FAQ)], "encoding_format": "base64"}
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    return {"model": scenario.model, "messages": messages, "stream": scenario.stream}
