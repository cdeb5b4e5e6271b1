"""The attempt loop: a request goes to a deployment of its model; while nothing has reached the client, a
failure may be retried (on another deployment at once, on the same one after a backoff and never before
its Retry-After) and, once the model's retries are spent or none of its deployments is up, fall back to
the next model of its chain (the budget hold follows, re-reserved at that model's price).

What reached the client is never sent again: a stream is committed with its first bytes, a whole answer
once read in full. Every attempt is counted (thriftgate_upstream_attempts_total) and reported to health;
every failed attempt that another follows gets a ledger row of its own (`<request id>.<n>`, parent_id the
request's); the last attempt is the request's own row.

Each attempt takes a leg from its deployment's provider (proxy/dialects/providers.py): the path and body it
sends, and how its answer is read back into the client's dialect. So a retry or a fallback may cross
providers: gpt-4o on OpenAI, then claude-sonnet-4-5 on Anthropic, for an OpenAI client or an Anthropic one.

One attempt on one deployment is proxy/routing/deployment_call.py; the rows of failed attempts,
proxy/routing/failed_attempts.py.
"""

import asyncio
import random
from collections.abc import Callable
from typing import TypeVar

from proxy.accounting.metrics import Metrics
from proxy.accounting.pricing import PriceTable
from proxy.errors import ClientClosedRequest, ProxyError
from proxy.exchange import Exchange
from proxy.routing.deployment_call import Answer, DeploymentCaller, Relay
from proxy.routing.deployments import Route
from proxy.routing.failed_attempts import FailedAttemptRows, billed
from proxy.routing.fallbacks import allowed_fallbacks, fallback_saving
from proxy.routing.outcomes import Classifier, Failure, nothing_up
from proxy.routing.service import Routing
from proxy.stages.budget import Budgets
from proxy.stages.record import Recorder
from proxy.stages.settle import Settler
from proxy.stages.upstream import UpstreamClient

T = TypeVar("T")
# Tells the openai SDKs not to retry on their own: thriftgate has applied the retry policy already.
NO_CLIENT_RETRY = {"x-should-retry": "false"}

Reroute = Callable[[Exchange], None]  # checks the exchange's model may be served, and routes it


class Attempts:
    def __init__(self, routing: Routing, upstreams: UpstreamClient, recorder: Recorder, settler: Settler,
                 prices: PriceTable, metrics: Metrics, budgets: Budgets | None) -> None:
        self._routing = routing
        self._budgets = budgets
        self._calls = DeploymentCaller(routing, upstreams, metrics)
        self._failed = FailedAttemptRows(settler, recorder, budgets)
        self._prices = prices
        self._metrics = metrics

    async def run(self, ex: Exchange, answer: Answer, relay: Relay | None = None, *,
                  reroute: Reroute = lambda ex: None, fallbacks: bool = True) -> T:
        """`answer` makes the result of a whole answer, `relay` that of a committed stream. A failure nothing
        saves is the last upstream answer relayed as it came, or a ProxyError. `reroute` checks a fallback
        model may be served (the pipeline's price rules) before its budget is reserved."""
        routing = self._routing
        route = routing.route(ex.model)
        allowed = allowed_fallbacks(ex, routing.route) if fallbacks else frozenset()
        chain = route.fallbacks if allowed is None or allowed else ()
        classify = routing.classifier  # a reload meanwhile changes the next request's, not this one's
        position = 0
        refused: ProxyError | None = None
        while True:
            failure = await self._on_model(ex, route, answer, relay, reroute, classify)
            if not isinstance(failure, Failure):
                return failure
            while position < len(chain):
                model, reasons = chain[position]
                position += 1
                if failure.reason in reasons and (allowed is None or model in allowed):
                    try:
                        route = await self._fall_back(ex, model, failure, reroute)
                        break
                    except ProxyError as err:  # the budget cannot cover this model: the next one may fit
                        refused = err
            else:
                if refused is not None:
                    raise refused
                return self._give_up(ex, failure, answer)

    def fallback_saving(self, ex: Exchange) -> None:
        saving = fallback_saving(ex, self._prices)
        if saving is not None:
            self._metrics.saving(saving)

    # ---- one model ----

    async def _on_model(self, ex: Exchange, route: Route, answer: Answer, relay: Relay | None, reroute: Reroute,
                        classify: Classifier) -> T | Failure:
        router = self._routing.router
        retries = self._routing.settings.retries
        tried: tuple[str, ...] = ()  # not to be picked again unless nothing else is up
        failed_on: tuple[str, ...] = ()  # health hears of one failure per deployment and request
        excluded: tuple[str, ...] = ()  # not to be picked again at all: this request cannot call them (no key)
        failure: Failure | None = None
        attempts = 0
        while True:
            choice = await router.pick(route, tried)
            if choice is None and attempts <= retries and len(excluded) < len(route.deployments):
                wait = self._wait(route, attempts)
                if wait is not None:
                    await asyncio.sleep(wait)
                    tried = excluded
                    choice = await router.pick(route, tried)
            if choice is None:
                return failure or nothing_up(route.model, router.unavailable(route), self._routing.clock())
            if failure is not None:
                await self._failed.record(ex, failure)
                _stop_if_client_left(ex)
            deployment, probe = choice
            attempts += 1
            result = await self._calls.call(ex, deployment, probe, answer, relay, classify)
            if not isinstance(result, Failure):
                return result
            failure = result
            await self._calls.report(failure, probe, counted=probe or deployment.name not in failed_on)
            if not failure.retryable or attempts > retries:
                return failure
            tried += (deployment.name,)
            failed_on += (deployment.name,)
            if not failure.health:
                excluded += (deployment.name,)
            if failure.billed_prompt and self._budgets is not None:
                await self._failed.record(ex, failure)  # counted now, so that the hold made again leaves room for it
                await self._budgets.reserve_again(ex, reroute)

    def _wait(self, route: Route, attempts: int) -> float | None:
        """How long to wait before the next attempt when nothing untried is up; None: not worth waiting."""
        backoff = self._routing.settings.backoff
        wait = 0.0
        if attempts:
            wait = min(backoff.initial * 2 ** (attempts - 1), backoff.max) * (1 - 0.25 * random.random())
        down = self._routing.router.unavailable(route)
        if down is not None:
            if down.probing:
                return None
            wait = max(wait, down.back_at - self._routing.clock())
        if wait > backoff.max:
            return None
        return wait

    # ---- the model failed: give up, or fall back ----

    def _give_up(self, ex: Exchange, failure: Failure, answer: Answer) -> T:
        if not failure.recorded:
            ex.usage = billed(ex, failure)
        if failure.retryable and (ex.attempts > 1 or self._routing.settings.retries):
            headers = failure.answer.headers if failure.answer is not None else failure.error.headers
            headers.update(NO_CLIENT_RETRY)
        if failure.answer is not None:
            ex.error_code = failure.code
            return answer(ex, failure.answer)
        raise failure.error

    async def _fall_back(self, ex: Exchange, model: str, failure: Failure, reroute: Reroute) -> Route:
        await self._failed.record(ex, failure)
        _stop_if_client_left(ex)
        previous = ex.model
        if ex.fallback_from is None:
            ex.fallback_from = previous
        ex.fallback_reason = failure.reason
        ex.set_model(model)
        self._metrics.fallback(previous, model, failure.reason)
        try:
            reroute(ex)
            if self._budgets is not None:
                await self._budgets.reserve_again(ex, reroute)
        except ProxyError as err:
            err.message = f"The model '{previous}' failed ({failure.code}); its fallback '{model}': {err.message}"
            raise
        return self._routing.route(model)


def _stop_if_client_left(ex: Exchange) -> None:
    transport = ex.request.transport
    if transport is None or transport.is_closing():
        ex.client_disconnected = True
        raise ClientClosedRequest("The client went away before the request could be tried again.")
