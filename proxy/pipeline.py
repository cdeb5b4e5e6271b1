"""The request handler: the one place that knows the order of the stages.

authenticate -> parse -> policies -> route -> count -> reserve -> forward | stream -> settle -> record

Each stage is a module of proxy/stages/ (parse is the client's dialect, proxy/dialects/; the policies
are plugins in proxy/policies/, run by stages/hooks.py). Forward and stream run inside the attempt loop of
proxy/routing/ (deployments, retries, fallbacks), which hands each answer to stages/answer.py to be relayed.
Each attempt takes a leg from its upstream's provider: the body it sends, and its answer turned back into
the client's dialect.

Count is lazy (`ex.prompt_tokens()`): it runs only when a policy's match or a budget asks for it.
Settle, the policies' after-answer hooks and record run in a `finally`: every request is recorded once,
whatever happened to it.
"""

import asyncio
import dataclasses
import logging
import time

from aiohttp import web

from proxy.dialects.ingress import INGRESS, for_request
from proxy.stages.auth import Auth
from proxy.stages.budget import Budgets
from proxy.config import Config
from proxy.errors import BadRequest, ProxyError
from proxy.exchange import Exchange
from proxy.in_flight import InFlight
from proxy.stages.hooks import PolicyChain
from proxy.accounting.language import HEADER as LANGUAGE_HEADER
from proxy.accounting.language import language_of
from proxy.accounting.pricing import PriceTable
from proxy.stages.count import prompt_counter
from proxy.stages import paths
from proxy.stages.paths import PathRouter
from proxy.stages.answer import Answers
from proxy.stages.record import Recorder
from proxy.stages.settle import Settler
from proxy.stages.tags import TAGS_HEADER, parse_tags
from proxy.accounting.tokens import TokenCounter
from proxy.routing.attempts import Attempts
from proxy.routing.outcomes import Whole
from proxy.routing.service import Routing
from proxy.stages import outcome, request_body
from proxy.stages.upstream import UpstreamClient, read_body, relayed_headers
from proxy.dialects.providers import Passthrough, upstream_path

log = logging.getLogger("thriftgate.pipeline")

_UNPRICED_LOG_LIMIT = 1000


class Pipeline:
    def __init__(
        self,
        config: Config,
        *,
        tokens: TokenCounter,
        prices: PriceTable,
        settler: Settler,
        upstreams: UpstreamClient,
        routing: Routing,
        attempts: Attempts,
        recorder: Recorder,
        policies: PolicyChain,
        in_flight: InFlight,
        auth: Auth | None = None,
        budgets: Budgets | None = None,  # None: no budget, no key budget, no shared totals: nothing to do
    ) -> None:
        self._max_body = config.server.max_body_bytes
        self._paths = PathRouter(INGRESS, config.server.passthrough_paths, config.server.unpriced_paid_paths)
        self._reject_unpriced = config.pricing.unpriced == "reject"
        self._settler = settler
        self._count_prompt = prompt_counter(tokens)
        self._prices = prices
        self._upstreams = upstreams
        self._routing = routing
        self._attempts = attempts
        self._recorder = recorder
        self._policies = policies
        self._in_flight = in_flight
        self._auth = auth
        self._budgets = budgets
        self._unpriced_logged: set[str] = set()
        self._answers = Answers(settler=settler, prices=prices, budgets=budgets, in_flight=in_flight)

    # ---- entry points ----

    def priced(self, path: str):
        """The handler of a priced endpoint's exact route (dialects/ingress.py)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            route = self._paths.priced(path, request.rel_url.raw_query_string)
            ex = Exchange(request, route.dialect.endpoint, route.dialect, upstream_path=route.upstream_path)
            return await self._handle(ex, self._priced)

        return handler

    async def any_v1_path(self, request: web.Request) -> web.StreamResponse:
        """Every other /v1 path: decided on its normalised form (stages/paths.py)."""
        dialect = for_request(request.path, request.headers)  # the shape of its errors, until it is resolved
        return await self._handle(Exchange(request, "passthrough", dialect), self._resolved)

    def handled(self, endpoint: str, run):
        """An endpoint with a module of its own (the Batch API's): `run(ex)` answers it; refusing errors in the
        client's shape, settling and recording stay the pipeline's, as for every request."""
        async def canonical(ex: Exchange, policies: PolicyChain) -> web.StreamResponse:
            url = ex.request.rel_url
            path = paths.normalise(url.raw_path)
            if path != ex.request.path:  # its route matched a spelling the upstream would read as another path
                raise BadRequest(f"The request path is {path} once normalised; send it as such.", code="invalid_path")
            ex.upstream_path = paths.upstream_path_for(path, url.raw_query_string)
            return await run(ex)

        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._handle(Exchange(request, endpoint, for_request(request.path, request.headers)),
                                      canonical)

        return handler

    def replace_policies(self, policies: PolicyChain) -> None:
        """Requests already in flight finish with the chain they started with."""
        self._policies = policies

    async def _handle(self, ex: Exchange, run) -> web.StreamResponse:
        policies = self._policies
        try:
            with self._in_flight.tracked():
                response = await run(ex, policies)
            if not response.prepared and outcome.client_gone(ex.request):
                outcome.client_left(ex, answer_started=False)  # the answer is ready (and paid for); the client is gone
            return response
        except ProxyError as err:
            return self._refuse(ex, err)
        except asyncio.CancelledError:
            if self._in_flight.stopping:  # cut by this proxy: it is stopping and the grace is over
                outcome.cut_at_shutdown(ex)
            elif outcome.client_gone(ex.request):  # with handler_cancellation, a handler whose client left is cancelled
                outcome.client_left(ex, answer_started=ex.status != 0)  # a stream's status is set once it has started
            raise
        except ConnectionResetError:  # the client left before an answer could start
            outcome.client_left(ex, answer_started=False)
            raise
        except Exception:  # a bug still gets an answer in the client's shape and a ledger row
            log.exception("request %s failed inside the proxy", ex.request_id)
            return self._refuse(ex, ProxyError("The proxy failed to handle the request.", code="internal_error"))
        finally:
            outcome.label(ex)
            try:
                self._settler.settle(ex)
                if self._budgets is not None:
                    await self._budgets.settle(ex)  # shielded: runs to the end even for a cancelled request
                if policies:
                    await policies.after_answer(ex)
                if ex.fallback_from is not None:
                    self._attempts.fallback_saving(ex)  # after the policies': counted once
            finally:
                self._recorder.record(ex)  # even if a step above failed: no spend record is lost

    # ---- stages ----

    async def _resolved(self, ex: Exchange, policies: PolicyChain) -> web.StreamResponse:
        url = ex.request.rel_url
        route = self._paths.resolve(ex.request.method, url.raw_path, url.raw_query_string)
        ex.upstream_path = route.upstream_path
        if route.dialect is None:
            ex.dialect = for_request(route.path, ex.request.headers)  # which provider's API it is
            return await self._pass_through(ex, policies)
        ex.dialect, ex.endpoint = route.dialect, route.dialect.endpoint
        return await self._priced(ex, policies)

    async def _priced(self, ex: Exchange, policies: PolicyChain) -> web.StreamResponse:
        if self._auth is not None:
            await self._auth.authenticate(ex)
        ex.raw_body = await request_body.read(ex.request, self._max_body)
        ex.body = await request_body.parse(ex.dialect, ex.raw_body)
        big = request_body.is_big(ex.raw_body)
        facts = ex.dialect.facts(ex.body)
        ex.requested_model = ex.model = facts.model
        ex.stream, ex.client_wants_usage, ex.max_output_tokens = facts.stream, facts.include_usage, facts.max_output_tokens
        ex.tags = parse_tags(ex.request.headers.get(TAGS_HEADER)) | ex.tags  # and the key's, from authenticate
        ex.language = language_of(ex.request.headers.get(LANGUAGE_HEADER))
        ex.requested_max_output_tokens = facts.max_output_tokens
        ex.count_prompt = self._count_prompt
        if policies:
            if big:
                await asyncio.to_thread(ex.prompt_tokens)  # memoised for the policies' matches
            await policies.on_request(ex)
            if ex.early_response is not None:
                return self._answers.early(ex)
        self._route(ex)
        if self._budgets is not None:
            if big:
                await asyncio.to_thread(ex.prompt_tokens)  # memoised (again, if a policy changed model or body)
            await self._budgets.reserve(ex, self._route)  # may downgrade the model and route again
        if ex.stream and not ex.client_wants_usage and ex.dialect.ask_for_stream_usage(ex.body):
            ex.edit_body()
        try:
            return await self._attempts.run(ex, self._answers.whole, self._answers.relay if ex.stream else None,
                                            reroute=self._route)
        except ProxyError as err:
            raise self._answers.own_error(ex, err)

    async def _pass_through(self, ex: Exchange, policies: PolicyChain) -> web.StreamResponse:
        if self._auth is not None:
            await self._auth.authenticate(ex)
        ex.raw_body = await request_body.read(ex.request, self._max_body)
        ex.upstream = self._upstreams.default_for(ex.dialect.wire)
        if ex.key_id is None and self._auth is not None and self._auth.keys_possible:
            ex.upstream = dataclasses.replace(ex.upstream, api_key=None, key_env=None)  # its own key, never ours
        if self._budgets is not None:
            await self._budgets.reserve_requests(ex)  # its cost is unknown: request limits only
        return await self._forward(ex)

    def _route(self, ex: Exchange) -> None:
        route = self._routing.route(ex.model)
        if route is None:
            raise BadRequest(f"No upstream serves the model '{ex.model}'.", param="model", code="model_not_found")
        ex.upstream = route.deployments[0]  # until the attempt loop picks one
        if self._prices.lookup(ex.model) is not None:
            return
        if self._reject_unpriced:
            raise BadRequest(
                f"The model '{ex.model}' has no price, and this proxy refuses unpriced models.",
                param="model", code="model_not_priced",
            )
        if ex.model not in self._unpriced_logged and len(self._unpriced_logged) < _UNPRICED_LOG_LIMIT:
            self._unpriced_logged.add(ex.model)
            log.warning("model %r has no price: served, counted, and metered as unpriced", ex.model)

    async def _forward(self, ex: Exchange) -> web.Response:
        """An unpriced path, as it came, to the upstream that speaks the client's dialect (no retries)."""
        leg = Passthrough(upstream_path(ex), ex.raw_body or None)
        ex.upstream_started = time.perf_counter()
        async with self._upstreams.open(ex.upstream, ex.request.method, leg.path, leg.body, ex.client_headers()) as resp:
            whole = Whole(resp.status, await read_body(ex.upstream, resp), relayed_headers(resp.headers), leg)
        return self._answers.whole(ex, whole, priced=False)

    def _refuse(self, ex: Exchange, err: ProxyError) -> web.Response:
        ex.status = err.status
        ex.error_code = err.code or err.type
        response = ex.dialect.error_response(err)
        response.headers["x-thriftgate-request-id"] = ex.request_id
        if err.close_connection:
            response.force_close()
        return response
