"""What every request meets before its endpoint: recording, latency, OpenAI's own checks, the test's faults."""

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.fake import wire
from tests.fake.call import ERROR_FAULTS, STATE, Call, Knobs, RecordedRequest, UpstreamState, error_response

TIMEOUT_FAULT_SECONDS = 3600.0  # longer than any client waits; the sleep ends when the client hangs up
GARBAGE_BODY = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
NOT_JSON = object()

EndpointHandler = Callable[[Call], Awaitable[web.StreamResponse]]
RequestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def endpoint(handler: EndpointHandler, *required: str, reads_body: bool = True) -> RequestHandler:
    """Wrap a handler in what OpenAI checks first (key, then body and model), then the test's latency and faults."""

    async def serve(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        started = time.perf_counter()
        raw = await request.read()
        body = parse_body(raw)
        body_dict = body if isinstance(body, dict) else {}
        knobs = Knobs.of(request.headers, str(body_dict.get("model", "")))
        if knobs.latency_s:
            await asyncio.sleep(knobs.latency_s)
        state.served += 1
        request_id = "req_" + hashlib.blake2b(f"{state.seed}:{state.served}".encode(), digest_size=16).hexdigest()
        call = Call(request, state, body_dict, knobs, request_id, started)
        rejection = auth_error(call) or (body_error(call, body, required) if reads_body else None)
        if rejection is not None:
            return rejection
        call.fault = fault_due(call, raw)
        if call.fault in ERROR_FAULTS:
            return fault_error(call)
        if call.fault == "timeout":
            await asyncio.sleep(TIMEOUT_FAULT_SECONDS)
        if call.fault == "garbage":
            return web.Response(body=GARBAGE_BODY, content_type="application/json", headers=call.headers())
        try:
            return await handler(call)
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
            # OpenAI validates every field's type before it generates: a malformed request is its 400, not a 500.
            message = f"Invalid request body: {type(exc).__name__}: {exc}"[:300]
            return error_response(call, 400, wire.error_body(message, "invalid_request_error"))

    return serve


@web.middleware
async def record_requests(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
    """Keep every request, routed or not, for tests to see what a proxy forwarded."""
    recorded = request.app[STATE].recorded
    if recorded is not None:
        body = parse_body(await request.read())  # aiohttp keeps the bytes: the endpoint reads them again
        headers = CIMultiDict(request.headers)
        recorded.append(RecordedRequest(request.method, request.path, headers, None if body is NOT_JSON else body))
    return await handler(request)


@web.middleware
async def invalid_url_errors(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
    """A path or method the API does not have gets OpenAI's 404, not aiohttp's plain-text 404 or 405."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        body = wire.error_body(f"Invalid URL ({request.method} {request.path})", "invalid_request_error")
        return web.Response(status=404, body=body, content_type="application/json")


def parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return NOT_JSON


def auth_error(call: Call) -> web.Response | None:
    scheme, _, key = call.request.headers.get("Authorization", "").partition(" ")
    if scheme == "Bearer" and key in call.state.api_keys:
        return None
    if scheme != "Bearer" or not key:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization header using "
            "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) "
            "if you're accessing the API from your browser and are prompted for a username and password. You can "
            "obtain an API key from https://platform.openai.com/account/api-keys."
        )
        return error_response(call, 401, wire.error_body(message, "invalid_request_error"))
    masked = key[:3] + "*" * max(len(key) - 7, 0) + key[-4:]
    message = (
        f"Incorrect API key provided: {masked}. "
        "You can find your API key at https://platform.openai.com/account/api-keys."
    )
    return error_response(call, 401, wire.error_body(message, "invalid_request_error", code="invalid_api_key"))


def body_error(call: Call, body: Any, required: tuple[str, ...]) -> web.Response | None:
    if not isinstance(body, dict):
        message = (
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
            "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you "
            "have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)"
        )
        return error_response(call, 400, wire.error_body(message, "invalid_request_error"))
    if not body.get("model"):
        return error_response(call, 400, wire.error_body("you must provide a model parameter", "invalid_request_error"))
    missing = next((name for name in required if name not in body), None)
    if missing is not None:
        message = f"Missing required parameter: '{missing}'."
        error = wire.error_body(message, "invalid_request_error", missing, "missing_required_parameter")
        return error_response(call, 400, error)
    return None if is_known(call.state, call.model) else model_not_found(call, call.model)


def is_known(state: UpstreamState, model: str) -> bool:
    return model in state.models or model.startswith("fake-")


def model_not_found(call: Call, model: str) -> web.Response:
    message = f"The model `{model}` does not exist or you do not have access to it."
    return error_response(call, 404, wire.error_body(message, "invalid_request_error", code="model_not_found"))


def fault_due(call: Call, raw: bytes) -> str | None:
    """The fault to play now. x-fake-fault-times: N plays it on the first N requests that share the
    x-fake-fault-key header (by default: the same body), so a client's retries of one request meet it N times."""
    fault, times = call.knobs.fault, call.request.headers.get("x-fake-fault-times")
    if fault is None or times is None:
        return fault
    key = (fault, call.request.headers.get("x-fake-fault-key") or hashlib.sha1(raw).hexdigest())
    call.state.fault_hits[key] += 1
    return fault if call.state.fault_hits[key] <= int(times) else None


def fault_error(call: Call) -> web.Response:
    if call.fault == "429":
        return rate_limited(call)
    if call.fault == "400":
        message = "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead."
        body = wire.error_body(message, "invalid_request_error", "temperature", "decimal_above_max_value")
        return error_response(call, 400, body)
    if call.fault == "503":
        message = (
            "That model is currently overloaded with other requests. You can retry your request, or contact us "
            "through our help center at help.openai.com if the error persists. (Please include the request ID "
            f"{call.request_id} in your message.)"
        )
        return error_response(call, 503, wire.error_body(message, "server_error"))
    message = "The server had an error while processing your request. Sorry about that!"
    return error_response(call, 500, wire.error_body(message, "server_error"))


def rate_limited(call: Call) -> web.Response:
    retry_after = call.knobs.retry_after
    message = (
        f"Rate limit reached for {call.model} in organization org-fakeupstream on tokens per min (TPM): "
        f"Limit 30000, Used 30000, Requested 1000. Please try again in {retry_after}s. "
        "Visit https://platform.openai.com/account/rate-limits to learn more."
    )
    headers = {
        "retry-after": retry_after,
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": f"{retry_after}s",
    }
    return error_response(call, 429, wire.error_body(message, "tokens", code="rate_limit_exceeded"), headers)
