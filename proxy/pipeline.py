"""The request handler: the one place that knows the order of the stages.

authenticate -> parse -> policies -> route -> count -> reserve -> forward | stream -> settle -> record

Each stage is a module of proxy/stages/ (parse is the client's dialect, proxy/dialects/; the policies
are plugins in proxy/policies/, run by stages/hooks.py). Forward and stream run inside the attempt loop of
proxy/routing/ (deployments, retries, fallbacks), which hands each answer back here to be relayed. Each
attempt takes a leg from its upstream's provider: the body it sends, and its answer turned back into the
client's dialect.

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
from proxy.errors import BadRequest, ProxyError, UpstreamUnavailable, upstream_text_error
from proxy.exchange import Exchange
from proxy.in_flight import InFlight
from proxy.stages.hooks import PolicyChain
from proxy.accounting.language import HEADER as LANGUAGE_HEADER
from proxy.accounting.language import language_of
from proxy.accounting.money import format_usd
from proxy.accounting.pricing import PriceTable
from proxy.stages.count import prompt_counter
from proxy.stages import paths
from proxy.stages.paths import PathRouter
from proxy.stages.record import Recorder
from proxy.stages.settle import Settler, read_answer
from proxy.stages.stream import SseRelay
from proxy.stages.tags import TAGS_HEADER, parse_tags
from proxy.accounting.tokens import TokenCounter
from proxy.accounting.usage import Usage
from proxy.routing.attempts import Attempts
from proxy.routing.outcomes import Whole
from proxy.routing.service import Routing
from proxy.stages import outcome, request_body
from proxy.stages.upstream import UpstreamClient, iter_body, read_body, relayed_headers
from proxy.dialects.providers import Passthrough, upstream_path
from proxy.openai_wire import header_value

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
                return self._answer_early(ex)
        self._route(ex)
        if self._budgets is not None:
            if big:
                await asyncio.to_thread(ex.prompt_tokens)  # memoised (again, if a policy changed model or body)
            await self._budgets.reserve(ex, self._route)  # may downgrade the model and route again
        if ex.stream and not ex.client_wants_usage and ex.dialect.ask_for_stream_usage(ex.body):
            ex.edit_body()
        return await self._attempts.run(ex, self._answer_whole, self._relay_events if ex.stream else None,
                                        reroute=self._route)

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
        return self._answer_whole(ex, whole, priced=False)

    def _answer_whole(self, ex: Exchange, whole: Whole, priced: bool = True) -> web.Response:
        if whole.leg.local is not None:
            return self._answer_locally(ex, whole.body)
        ex.upstream_seconds = time.perf_counter() - ex.upstream_started
        ex.status, body = whole.status, whole.body
        if whole.status >= 400:
            ex.error_code = ex.error_code or f"upstream_{whole.status}"
        translated = whole.leg.answer(ex, whole.status, body)
        if translated is not None:
            ex.status, body = translated
        elif whole.status >= 400:
            if (err := upstream_text_error(ex.upstream.name, whole.status, body)) is not None:
                body, whole.headers["Content-Type"] = ex.dialect.error_response(err).body, "application/json"
        elif priced:
            read_answer(ex, body)
        self._settler.settle(ex)
        whole.headers.update(self._answer_headers(ex))
        return web.Response(status=ex.status, body=body, headers=whole.headers)

    def _answer_locally(self, ex: Exchange, body: bytes) -> web.Response:
        """The leg answered without the upstream (Anthropic's count_tokens on an OpenAI upstream): an estimate."""
        ex.status = 200
        read_answer(ex, body)
        ex.usage = Usage(estimated=True)
        self._settler.settle(ex)
        return web.Response(body=body, content_type="application/json", headers=self._answer_headers(ex))

    async def _relay_events(self, ex: Exchange, resp, first: bytes, leg) -> web.StreamResponse:
        """The stream, committed with its first bytes: relayed as it comes; cut short, it ends with an error event."""
        price = (lambda usage: self._prices.cost_nanos(ex.model, usage)) if ex.client_wants_usage else None
        relay = leg.stream(ex, price) or SseRelay(ex.dialect, hide_usage_chunk=not ex.client_wants_usage, price=price)
        response = web.StreamResponse(status=200, headers=relayed_headers(resp.headers))
        response.headers.update(self._answer_headers(ex))
        await response.prepare(ex.request)
        ex.status = 200
        try:
            out = relay.feed(first)
            if out:
                await response.write(out)
            async for data in iter_body(ex.upstream, resp):
                out = relay.feed(data)
                if out:
                    await response.write(out)
            tail = relay.remainder()
            if tail:
                await response.write(tail)
            if relay.errored:  # the upstream ended it with an error event of its own, which the client has
                ex.truncated, ex.error_code = True, "upstream_stream_error"
            elif not relay.done:
                raise UpstreamUnavailable(f"The upstream '{ex.upstream.name}' closed the stream before its end.",
                                          code="upstream_stream_incomplete")
            await response.write_eof()
        except ConnectionResetError:
            ex.client_disconnected = True  # leaving the `async with` stops reading upstream
        except ProxyError as err:
            await self._cut_short(ex, response, err)
        finally:
            ex.upstream_seconds = time.perf_counter() - ex.upstream_started
            ex.usage, ex.first_token_at, ex.stream_events = relay.usage, relay.first_text_at, relay.events()
            ex.partial_usage = relay.partial_usage
            if ex.usage is None:
                ex.output_text = relay.output_text()  # to count what was generated
        return response

    async def _cut_short(self, ex: Exchange, response: web.StreamResponse, err: ProxyError) -> None:
        """The upstream broke mid-stream: never a clean end that makes the answer look complete."""
        ex.truncated = True
        ex.error_code = _CUT_SHORT.get(err.code or "", err.code)
        message = f"{err.message} The answer is incomplete: thriftgate ended the stream here."
        try:
            await response.write(ex.dialect.stream_error_event(message, ex.error_code))
            await response.write_eof()
        except ConnectionResetError:
            ex.client_disconnected = True

    def _answer_early(self, ex: Exchange) -> web.StreamResponse:
        """A policy answered without the upstream (a cascade's accepted try, a lookup hit)."""
        self._settler.settle(ex)
        if not ex.early_response.prepared:
            ex.early_response.headers.update(self._answer_headers(ex))
        return ex.early_response

    def _refuse(self, ex: Exchange, err: ProxyError) -> web.Response:
        ex.status = err.status
        ex.error_code = err.code or err.type
        response = ex.dialect.error_response(err)
        response.headers["x-thriftgate-request-id"] = ex.request_id
        if err.close_connection:
            response.force_close()
        return response

    def _answer_headers(self, ex: Exchange) -> dict[str, str]:
        headers = {"x-thriftgate-request-id": ex.request_id}
        if ex.model:
            headers["x-thriftgate-model"] = header_value(ex.model)
        if ex.attempts:
            headers["x-thriftgate-upstream"] = ex.upstream.name
            headers["x-thriftgate-attempts"] = str(ex.attempts)
            if ex.fallback_from is not None:
                headers["x-thriftgate-fallback"] = header_value(ex.model)
        if ex.usage is not None:
            headers["x-thriftgate-prompt-tokens"] = str(ex.usage.prompt_tokens)
            headers["x-thriftgate-completion-tokens"] = str(ex.usage.completion_tokens)
        if ex.cost_nanos is not None:
            headers["x-thriftgate-cost-usd"] = format_usd(ex.cost_nanos)
        if ex.applied:
            headers["x-thriftgate-policies"] = ",".join(ex.applied)
        if ex.answer_headers:
            headers.update((name, header_value(value)) for name, value in ex.answer_headers.items())
        if self._budgets is not None:
            headers.update(self._budgets.headers(ex))  # our x-ratelimit-* replace the upstream's
        return headers


# What broke a stream that had begun: it stalled past routing.timeouts.between_chunks (or the total), or the
# connection dropped.
_CUT_SHORT = {"upstream_timeout": "upstream_stream_stalled", "upstream_unreachable": "upstream_stream_cut"}
