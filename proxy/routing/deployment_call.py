"""One attempt on one deployment: the leg its provider gives, the call (a whole answer, or a stream committed with
its first bytes), and what the attempt tells metrics, the router and health. The attempt loop
(proxy/routing/attempts.py) decides what follows a failure.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import orjson
from multidict import CIMultiDict

from proxy.accounting.metrics import Metrics
from proxy.errors import UpstreamKeyMissing, UpstreamTimeout, UpstreamUnavailable
from proxy.exchange import Exchange
from proxy.routing.outcomes import Classifier, Failure, Whole
from proxy.routing.service import Routing
from proxy.stages.upstream import UpstreamClient, keep_reading_within, read_body, read_first, relayed_headers
from proxy.upstream_types import Upstream

T = TypeVar("T")
Answer = Callable[[Exchange, Whole], T]
Relay = Callable[[Exchange, aiohttp.ClientResponse, bytes, Any], Awaitable[T]]  # ..., first bytes, leg


class DeploymentCaller:
    def __init__(self, routing: Routing, upstreams: UpstreamClient, metrics: Metrics) -> None:
        self._routing = routing
        self._upstreams = upstreams
        self._metrics = metrics

    async def call(self, ex: Exchange, deployment: Upstream, probe: bool, answer: Answer, relay: Relay | None,
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

    async def report(self, failure: Failure, probe: bool, *, counted: bool) -> None:
        """Counted once per request and deployment: one request failing again does not cool a deployment alone."""
        deployment = failure.deployment
        self._metrics.upstream_attempt(deployment.name, failure.outcome)
        if failure.outcome == "client_error":  # it answered, whatever it thought of the request
            await self._answered(deployment, probe)
        elif failure.health and (counted or failure.retry_after):
            rest_until = self._routing.clock() + failure.retry_after if failure.retry_after else 0.0
            await self._routing.health.failed(deployment.name, probe=probe, rest_until=rest_until)


def leg_for(ex: Exchange, deployment: Upstream) -> Any:
    """The attempt's leg from the deployment's provider, under the deployment's own name for the model."""
    leg = deployment.provider.leg(ex)
    if deployment.model is not None and leg.local is None and leg.body is not None:
        body = orjson.loads(leg.body)
        body["model"] = deployment.model
        leg.body = orjson.dumps(body)
    return leg
