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

from proxy.errors import BadRequest
from proxy.exchange import Exchange, new_request_id
from proxy.record import Recorder
from proxy.settle import Settler, read_answer
from proxy.upstream import UpstreamClient, read_body, relayed_headers


@dataclass(slots=True)
class Attempt:
    exchange: Exchange  # settled: usage, cost and status are known
    body: bytes
    headers: CIMultiDict[str]
    answer: Any  # the parsed JSON answer of a 2xx, else None

    def as_response(self) -> web.Response:
        return web.Response(status=self.exchange.status, body=self.body, headers=self.headers)


class SideCalls:
    def __init__(self, upstreams: UpstreamClient, settler: Settler, recorder: Recorder) -> None:
        self._upstreams = upstreams
        self._settler = settler
        self._recorder = recorder

    async def try_model(self, ex: Exchange, model: str) -> Attempt:
        """Send the request as it stands to `model`, whole (not streamed), and settle it."""
        child = _fork(ex, model)
        child.upstream = self._upstreams.route(model)
        if child.upstream is None:
            raise BadRequest(f"No upstream serves the model '{model}'.", param="model", code="model_not_found")
        child.upstream_started = time.perf_counter()
        path = ex.request.rel_url.path_qs[3:]
        async with self._upstreams.open(child.upstream, "POST", path, child.forward_body(), ex.request.headers) as resp:
            body = await read_body(child.upstream, resp)
            child.status = resp.status
            headers = relayed_headers(resp.headers)
        child.upstream_seconds = time.perf_counter() - child.upstream_started
        answer = read_answer(child, body) if resp.status < 400 else None
        if resp.status >= 400:
            child.error_code = f"upstream_{resp.status}"
        self._settler.settle(child)
        return Attempt(child, body, headers, answer)

    def record(self, attempt: Attempt, reason: str) -> None:
        attempt.exchange.error_code = attempt.exchange.error_code or reason
        self._recorder.record(attempt.exchange)


def _fork(ex: Exchange, model: str) -> Exchange:
    child = copy.copy(ex)
    child.request_id = new_request_id()
    child.started = time.perf_counter()
    child.body = orjson.loads(orjson.dumps(ex.body))
    child.policy_marks, child.applied, child.savings, child.output_text = {}, [], [], []
    child.usage, child.cost_nanos, child.settled, child.early_response = None, None, False, None
    child.status, child.error_code, child.stream = 0, None, False
    child.body.pop("stream", None)
    child.body.pop("stream_options", None)
    child.set_model(model)
    return child
