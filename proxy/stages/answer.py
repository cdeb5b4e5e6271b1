"""The answer the client gets, once there is one: a whole answer (relayed, translated, or an upstream's plain-text
error put in the client's error shape), a stream relayed as it comes (cut short, it ends with an error event), a
policy's early answer, each with thriftgate's headers (request id, model, attempts, usage, cost, policies,
budgets). Settling its cost (stages/settle.py) happens here, before the headers that show it."""

import asyncio
import time

from aiohttp import web

from proxy.accounting.money import format_usd
from proxy.accounting.pricing import PriceTable
from proxy.accounting.usage import Usage
from proxy.errors import ProxyError, UpstreamUnavailable, upstream_text_error
from proxy.exchange import Exchange
from proxy.in_flight import InFlight
from proxy.openai_wire import header_value
from proxy.routing.outcomes import Whole
from proxy.stages.budget import Budgets
from proxy.stages.settle import Settler, read_answer
from proxy.stages.stream import SseRelay
from proxy.stages.upstream import iter_body, relayed_headers


class Answers:
    def __init__(self, *, settler: Settler, prices: PriceTable, budgets: Budgets | None, in_flight: InFlight) -> None:
        self._settler = settler
        self._in_flight = in_flight
        self._prices = prices
        self._budgets = budgets

    def whole(self, ex: Exchange, whole: Whole, priced: bool = True) -> web.Response:
        if whole.leg.local is not None:
            return self._locally(ex, whole.body)
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
        whole.headers.update(self._headers(ex))
        return web.Response(status=ex.status, body=body, headers=whole.headers)

    def _locally(self, ex: Exchange, body: bytes) -> web.Response:
        """The leg answered without the upstream (Anthropic's count_tokens on an OpenAI upstream): an estimate."""
        ex.status = 200
        read_answer(ex, body)
        ex.usage = Usage(estimated=True)
        self._settler.settle(ex)
        return web.Response(body=body, content_type="application/json", headers=self._headers(ex))

    async def relay(self, ex: Exchange, resp, first: bytes, leg) -> web.StreamResponse:
        """The stream, committed with its first bytes: relayed as it comes; cut short, it ends with an error event."""
        price = (lambda usage: self._prices.cost_nanos(ex.model, usage)) if ex.client_wants_usage else None
        relay = leg.stream(ex, price) or SseRelay(ex.dialect, hide_usage_chunk=not ex.client_wants_usage, price=price)
        response = web.StreamResponse(status=200, headers=relayed_headers(resp.headers))
        response.headers.update(self._headers(ex))
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
        except asyncio.CancelledError:
            if self._in_flight.stopping:  # cut as this proxy stops: the client must not take it for a whole answer
                await self._cut_short(ex, response, _STOPPING)
            raise
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

    def own_error(self, ex: Exchange, err: ProxyError) -> ProxyError:
        """Ours, where no upstream answer came (nothing was up, unreachable, timed out): with the headers of the
        stage's other answers (the error's own win), x-thriftgate-attempts 0 when no deployment was tried."""
        ex.status = err.status
        self._settler.settle(ex)
        for name, value in self._headers(ex).items():
            err.headers.setdefault(name, value)
        err.headers.setdefault("x-thriftgate-attempts", str(ex.attempts))
        return err

    def early(self, ex: Exchange) -> web.StreamResponse:
        """A policy answered without the upstream (a cascade's accepted try, a lookup hit)."""
        self._settler.settle(ex)
        if not ex.early_response.prepared:
            ex.early_response.headers.update(self._headers(ex))
        return ex.early_response


    def _headers(self, ex: Exchange) -> dict[str, str]:
        headers = {"x-thriftgate-request-id": ex.request_id}
        if ex.model:
            headers["x-thriftgate-model"] = header_value(ex.model)
        if ex.attempts:
            headers["x-thriftgate-upstream"] = ex.upstream.name
            headers["x-thriftgate-attempts"] = str(ex.attempts)
            # Only a fallback that served the answer: no model served an error answer. (A stream's status is still
            # 0 here: its 200 is set once it starts.)
            if ex.fallback_from is not None and ex.status < 400:
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
_STOPPING = ProxyError("thriftgate is stopping and its grace for requests in flight is over.", code="proxy_shutdown")
