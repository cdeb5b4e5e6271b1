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
"""

import asyncio
import copy
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import orjson
from multidict import CIMultiDict

from proxy.accounting.metrics import Metrics
from proxy.accounting.pricing import PriceTable
from proxy.accounting.usage import Usage
from proxy.errors import ClientClosedRequest, ProxyError, UpstreamKeyMissing, UpstreamTimeout, UpstreamUnavailable
from proxy.exchange import Exchange
from proxy.routing.deployments import Route
from proxy.routing.fallbacks import allowed_fallbacks, fallback_saving
from proxy.routing.outcomes import Classifier, Failure, Whole, nothing_up
from proxy.routing.service import Routing
from proxy.stages.budget import Budgets
from proxy.stages.record import Recorder
from proxy.stages.settle import Settler
from proxy.stages.upstream import UpstreamClient, keep_reading_within, read_body, read_first, relayed_headers
from proxy.upstream_types import Upstream

T = TypeVar("T")
# Tells the openai SDKs not to retry on their own: thriftgate has applied the retry policy already.
NO_CLIENT_RETRY = {"x-should-retry": "false"}

Answer = Callable[[Exchange, Whole], T]
Relay = Callable[[Exchange, aiohttp.ClientResponse, bytes, Any], Awaitable[T]]  # ..., first bytes, leg
Reroute = Callable[[Exchange], None]  # checks the exchange's model may be served, and routes it


class Attempts:
    def __init__(self, routing: Routing, upstreams: UpstreamClient, recorder: Recorder, settler: Settler,
                 prices: PriceTable, metrics: Metrics, budgets: Budgets | None) -> None:
        self._routing = routing
        self._budgets = budgets
        self._upstreams = upstreams
        self._recorder = recorder
        self._settler = settler
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
                await self._record(ex, failure)
                _stop_if_client_left(ex)
            deployment, probe = choice
            attempts += 1
            result = await self._attempt(ex, deployment, probe, answer, relay, classify)
            if not isinstance(result, Failure):
                return result
            failure = result
            await self._report(failure, probe, counted=probe or deployment.name not in failed_on)
            if not failure.retryable or attempts > retries:
                return failure
            tried += (deployment.name,)
            failed_on += (deployment.name,)
            if not failure.health:
                excluded += (deployment.name,)
            if failure.billed_prompt and self._budgets is not None:
                await self._record(ex, failure)  # counted now, so that the hold made again leaves room for it
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

    # ---- one attempt ----

    async def _attempt(self, ex: Exchange, deployment: Upstream, probe: bool, answer: Answer, relay: Relay | None,
                       classify: Classifier) -> T | Failure:
        leg = leg_for(ex, deployment)
        if leg.local is not None:  # answered without the upstream (a token count it has no endpoint for)
            return answer(ex, Whole(200, leg.local, CIMultiDict(), leg))
        router = self._routing.router
        ex.upstream = deployment
        ex.attempts += 1
        started = time.perf_counter()
        if ex.upstream_started is None:
            ex.upstream_started = started
        router.started(deployment)
        try:
            if relay is not None:
                got = await self._stream(ex, deployment, leg, probe, relay, started, classify)
            else:
                got = await self._whole(ex, deployment, leg, started)
        except (UpstreamTimeout, UpstreamUnavailable, UpstreamKeyMissing) as err:
            got = classify.of_error(err)
        finally:
            router.finished(deployment)
        if isinstance(got, Whole):
            if got.status >= 400:
                failure = classify.of_answer(got)
                if failure.retryable or failure.reason is not None:
                    got = failure
            if isinstance(got, Whole):  # the answer: a success, or an error no retry or fallback applies to
                if probe or deployment.name in self._routing.health.states:
                    await self._answered(deployment, probe)
                self._metrics.upstream_attempt(deployment.name, "ok" if got.status < 400 else "client_error")
                result = answer(ex, got)
                if ex.usage is not None:
                    router.used(deployment, ex.usage.total_tokens)
                return result
        if isinstance(got, Failure):
            got.deployment, got.number, got.started, got.ended = deployment, ex.attempts, started, time.perf_counter()
        return got

    async def _whole(self, ex: Exchange, deployment: Upstream, leg: Any, started: float) -> Whole:
        async with self._upstreams.open(deployment, "POST", leg.path, leg.body, ex.client_headers()) as resp:
            whole = Whole(resp.status, await read_body(deployment, resp), relayed_headers(resp.headers), leg)
        self._routing.router.measured(deployment, time.perf_counter() - started)
        return whole

    async def _stream(self, ex: Exchange, deployment: Upstream, leg: Any, probe: bool, relay: Relay, started: float,
                      classify: Classifier) -> T | Whole | Failure:
        """Committed with the first bytes of a 200 event stream; until then a failure, or a whole error answer."""
        timeouts = self._routing.settings.timeouts
        accepted = False
        try:
            async with asyncio.timeout(timeouts.first_token) as first_token:
                async with self._upstreams.open(deployment, "POST", leg.path, leg.body, ex.client_headers()) as resp:
                    if resp.status != 200 or resp.content_type != "text/event-stream":
                        return Whole(resp.status, await read_body(deployment, resp), relayed_headers(resp.headers), leg)
                    accepted = True
                    first = await read_first(deployment, resp)
                    if not first:
                        return classify.empty_stream(deployment)
                    first_token.reschedule(None)
                    self._routing.router.measured(deployment, time.perf_counter() - started)
                    keep_reading_within(deployment, resp, timeouts.between_chunks)
                    if probe or deployment.name in self._routing.health.states:
                        await self._answered(deployment, probe)
                    result = await relay(ex, resp, first, leg)
        except TimeoutError:
            if not first_token.expired():
                raise
            return classify.no_first_token(deployment, accepted=accepted)
        await self._ended(deployment, ex)
        return result

    async def _ended(self, deployment: Upstream, ex: Exchange) -> None:
        """A committed stream ended: one cut short counts against its deployment's health."""
        outcome = "truncated" if ex.truncated else "cancelled" if ex.client_disconnected else "ok"
        self._metrics.upstream_attempt(deployment.name, outcome)
        if ex.truncated:
            await self._routing.health.failed(deployment.name, probe=False)
        if ex.usage is not None:
            self._routing.router.used(deployment, ex.usage.total_tokens)

    async def _answered(self, deployment: Upstream, probe: bool) -> None:
        """It answered: a probe puts it back in rotation, and any answer ends a run of failures (callers on the
        hot path check first that there is anything to tell)."""
        if probe or deployment.name in self._routing.health.states:
            await self._routing.health.succeeded(deployment.name, probe=probe)

    # ---- failures ----

    async def _report(self, failure: Failure, probe: bool, *, counted: bool) -> None:
        """Counted once per request and deployment: one request failing again does not cool a deployment alone."""
        deployment = failure.deployment
        self._metrics.upstream_attempt(deployment.name, failure.outcome)
        if failure.outcome == "client_error":  # it answered, whatever it thought of the request
            await self._answered(deployment, probe)
        elif failure.health and (counted or failure.retry_after):
            rest_until = self._routing.clock() + failure.retry_after if failure.retry_after else 0.0
            await self._routing.health.failed(deployment.name, probe=probe, rest_until=rest_until)

    async def _record(self, ex: Exchange, failure: Failure) -> None:
        """A failed attempt another follows: a ledger row of its own, linked to the request, priced if billed."""
        if failure.recorded or failure.deployment is None:
            return
        failure.recorded = True
        row = copy.copy(ex)
        row.request_id, row.parent_id, row.attempts = f"{ex.request_id}.{failure.number}", ex.request_id, failure.number
        row.upstream, row.status, row.error_code = failure.deployment, failure.status, failure.code
        row.started, row.finished = failure.started, failure.ended
        row.upstream_started, row.upstream_seconds = failure.started, failure.ended - failure.started
        row.received_at = ex.received_at + (failure.started - ex.started)
        row.usage, row.cost_nanos, row.settled, row.output_text = _billed(ex, failure), None, False, []
        row.savings, row.policy_marks, row.applied, row.lookups = [], {}, [], {}
        row.side_cost_nanos, row.reservation, row.early_response = 0, None, None
        row.fallback_from = row.fallback_reason = None
        self._settler.settle(row)
        if row.cost_nanos and self._budgets is not None:
            await self._budgets.settle(row)  # billed beside the request's own hold
        self._recorder.record_attempt(row)

    def _give_up(self, ex: Exchange, failure: Failure, answer: Answer) -> T:
        if not failure.recorded:
            ex.usage = _billed(ex, failure)
        if failure.retryable and (ex.attempts > 1 or self._routing.settings.retries):
            headers = failure.answer.headers if failure.answer is not None else failure.error.headers
            headers.update(NO_CLIENT_RETRY)
        if failure.answer is not None:
            ex.error_code = failure.code
            return answer(ex, failure.answer)
        raise failure.error

    # ---- fallbacks ----

    async def _fall_back(self, ex: Exchange, model: str, failure: Failure, reroute: Reroute) -> Route:
        await self._record(ex, failure)
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


def leg_for(ex: Exchange, deployment: Upstream) -> Any:
    """The attempt's leg from the deployment's provider, under the deployment's own name for the model."""
    leg = deployment.provider.leg(ex)
    if deployment.model is not None and leg.local is None and leg.body is not None:
        body = orjson.loads(leg.body)
        body["model"] = deployment.model
        leg.body = orjson.dumps(body)
    return leg


def _billed(ex: Exchange, failure: Failure) -> Usage | None:
    """An attempt the upstream accepted and then failed: its prompt is counted as billed (an estimate)."""
    if not failure.billed_prompt:
        return None
    try:
        return Usage(prompt_tokens=ex.prompt_tokens(), estimated=True)
    except ValueError:
        return None


def _stop_if_client_left(ex: Exchange) -> None:
    transport = ex.request.transport
    if transport is None or transport.is_closing():
        ex.client_disconnected = True
        raise ClientClosedRequest("The client went away before the request could be tried again.")
