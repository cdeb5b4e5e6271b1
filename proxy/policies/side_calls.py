"""Upstream calls a policy makes beside the main request (a cascade's cheaper try).

Each side call is a child exchange: sent, settled and, when the policy says so, recorded with a
ledger row of its own, so every attempt that was paid for is priced and recorded.
"""

import copy
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from proxy.stages.budget import Budgets
from proxy.errors import BadRequest
from proxy.exchange import Exchange, new_request_id
from proxy.stages.record import Recorder
from proxy.stages.settle import Settler, read_answer
from proxy.stages.upstream import UpstreamClient, read_body, relayed_headers


@dataclass(slots=True)
class Attempt:
    exchange: Exchange  # settled: usage, cost and status are known
    body: bytes
    headers: CIMultiDict[str]
    answer: Any  # the parsed JSON answer of a 2xx, else None

    def as_response(self) -> web.Response:
        return web.Response(status=self.exchange.status, body=self.body, headers=self.headers)


class SideCalls:
    def __init__(
        self, upstreams: UpstreamClient, settler: Settler, recorder: Recorder, budgets: Budgets | None
    ) -> None:
        self._upstreams = upstreams
        self._settler = settler
        self._recorder = recorder
        self._budgets = budgets

    async def try_model(self, ex: Exchange, model: str) -> Attempt:
        """Send the request as it stands to `model`, whole (not streamed), and settle it.

        The attempt reserves budget like any request. Whoever called must then either `record` it (its
        hold is settled) or `adopt` it into the main request (which settles the hold with its own answer).
        """
        child = _fork(ex, model)
        self._route(child)
        if self._budgets is not None:
            await self._budgets.reserve(child, self._route)
        try:
            body, headers = await self._send(child)
        except BaseException:
            await self._settle_budget(child)
            raise
        answer = child.answer if child.status < 400 else None
        self._settler.settle(child)
        return Attempt(child, body, headers, answer)

    def adopt(self, ex: Exchange, attempt: Attempt) -> None:
        """The attempt's answer becomes the main request's answer, hold and all."""
        child = attempt.exchange
        ex.set_model(child.model)
        ex.upstream, ex.status, ex.usage, ex.reservation = child.upstream, child.status, child.usage, child.reservation
        ex.upstream_started, ex.upstream_seconds = child.upstream_started, child.upstream_seconds
        ex.early_response = attempt.as_response()

    async def record(self, attempt: Attempt, reason: str) -> None:
        """An attempt that was not used: its hold is settled and it gets a ledger row of its own."""
        attempt.exchange.error_code = attempt.exchange.error_code or reason
        await self._settle_budget(attempt.exchange)
        self._recorder.record(attempt.exchange)

    def _route(self, child: Exchange) -> None:
        child.upstream = self._upstreams.route(child.model)
        if child.upstream is None:
            raise BadRequest(f"No upstream serves the model '{child.model}'.", param="model", code="model_not_found")

    async def _send(self, child: Exchange) -> tuple[bytes, CIMultiDict[str]]:
        """One attempt through the upstream's leg: the answer in the request's own dialect."""
        leg = child.upstream.provider.leg(child)
        child.upstream_started = time.perf_counter()
        async with self._upstreams.open(child.upstream, "POST", leg.path, leg.body, child.client_headers()) as resp:
            body = await read_body(child.upstream, resp)
            child.status = resp.status
            headers = relayed_headers(resp.headers)
        child.upstream_seconds = time.perf_counter() - child.upstream_started
        if child.status >= 400:
            child.error_code = f"upstream_{child.status}"
        translated = leg.answer(child, child.status, body)
        if translated is not None:
            child.status, body = translated
        elif child.status < 400:
            read_answer(child, body)
        return body, headers

    async def _settle_budget(self, child: Exchange) -> None:
        if self._budgets is not None:
            await self._budgets.settle(child)


def _fork(ex: Exchange, model: str) -> Exchange:
    child = copy.copy(ex)
    child.request_id = new_request_id()
    child.started = time.perf_counter()
    child.body = orjson.loads(orjson.dumps(ex.body))
    child.policy_marks, child.applied, child.savings, child.output_text = {}, [], [], []
    child.usage, child.cost_nanos, child.settled, child.early_response = None, None, False, None
    child.answer, child.partial_usage = None, None
    child.reservation = None
    child.status, child.error_code, child.stream = 0, None, False
    child.body.pop("stream", None)
    child.body.pop("stream_options", None)
    child.set_model(model)
    return child
