"""What an attempt's failure was: its metric label, ledger code, whether it is retried, where it may fall back.

Retried: the statuses and kinds (`connect`, `timeout`) of routing.retry_on, never a 400. A failure may
lead to a fallback model for one of three reasons: `unavailable` (5xx, unreachable, timed out, every
deployment cooling down), `rate_limited` (429, every deployment resting or at its own limits) and
`context_window_exceeded` (the provider's 400 saying the prompt is too long for the model).
"""

import math
import time
from dataclasses import dataclass
from typing import Any

import orjson
from multidict import CIMultiDict

from proxy.errors import (ProxyError, RateLimited, ServiceUnavailable, UpstreamKeyMissing, UpstreamTimeout,
                          UpstreamUnavailable)
from proxy.routing.router import Unavailable
from proxy.upstream_types import Upstream

CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
CONTEXT_MESSAGES = ("maximum context length", "prompt is too long")  # OpenAI's words, Anthropic's
MAX_RETRY_AFTER_SECONDS = 3600.0


@dataclass(slots=True)
class Whole:
    """A whole upstream answer (not streamed, or an error where a stream was asked for), with the leg that
    reads it (proxy/dialects/providers.py: its `answer` translates it for the client, or keeps it)."""

    status: int
    body: bytes
    headers: CIMultiDict[str]
    leg: Any


@dataclass(slots=True)
class Failure:
    outcome: str  # rate_limited | server_error | client_error | connect | timeout (the metric's label)
    code: str  # the ledger's error code
    status: int  # the upstream's status, or 502 (unreachable) / 504 (timed out) / ours when nothing was up
    reason: str | None  # the fallback it may lead to
    retryable: bool
    retry_after: float = 0.0  # seconds the provider asked for
    answer: Whole | None = None  # the upstream's own error answer: relayed as it came if nothing else works
    error: ProxyError | None = None  # ours, when there is no answer to relay
    billed_prompt: bool = False  # accepted by the upstream before it failed: its prompt is counted as billed
    deployment: Upstream | None = None  # None: no attempt was made (nothing was up)
    number: int = 0  # the request's attempt number
    started: float = 0.0  # perf_counter seconds
    ended: float = 0.0
    recorded: bool = False  # has its own ledger row already
    health: bool = True  # says something about the deployment's health (a missing key says nothing)


class Classifier:
    """Failures under the configured retry_on."""

    def __init__(self, retry_on: tuple[int | str, ...]) -> None:
        self._statuses = frozenset(s for s in retry_on if isinstance(s, int) and s != 400)
        self._connect = "connect" in retry_on
        self._timeout = "timeout" in retry_on

    def of_error(self, err: UpstreamTimeout | UpstreamUnavailable | UpstreamKeyMissing, *,
                 billed_prompt: bool = False) -> Failure:
        if isinstance(err, UpstreamKeyMissing):  # this deployment cannot be called; another may
            return Failure("connect", err.code, 502, "unavailable", True, error=err, health=False)
        if isinstance(err, UpstreamTimeout):
            return Failure("timeout", err.code or "upstream_timeout", 504, "unavailable", self._timeout, error=err,
                           billed_prompt=billed_prompt)
        return Failure("connect", err.code or "upstream_unreachable", 502, "unavailable", self._connect, error=err,
                       billed_prompt=billed_prompt)

    def no_first_token(self, deployment: Upstream, *, accepted: bool) -> Failure:
        error = UpstreamTimeout(f"The upstream '{deployment.name}' sent no first token in time.",
                                code="upstream_first_token_timeout")
        return self.of_error(error, billed_prompt=accepted)

    def empty_stream(self, deployment: Upstream) -> Failure:
        error = UpstreamUnavailable(f"The upstream '{deployment.name}' ended the stream before sending anything.",
                                    code="upstream_stream_empty")
        return self.of_error(error, billed_prompt=True)

    def of_answer(self, whole: Whole) -> Failure:
        status = whole.status
        retryable = status in self._statuses
        retry_after = retry_after_seconds(whole.headers) if status in (429, 503, 529) else 0.0
        if status == 429:
            return Failure("rate_limited", "upstream_429", 429, "rate_limited", retryable, retry_after, whole)
        if status >= 500:
            return Failure("server_error", f"upstream_{status}", status, "unavailable", retryable, retry_after, whole)
        reason = "context_window_exceeded" if status == 400 and _context_window(whole.body) else None
        return Failure("client_error", f"upstream_{status}", status, reason, retryable, 0.0, whole)


def nothing_up(model: str, down: Unavailable | None, now: float) -> Failure:
    """Every deployment of the model is out of rotation: ours, in OpenAI's shape, saying when to come back.
    (None: one came back meanwhile, too late for this request.)"""
    down = down or Unavailable("unavailable", now + 1)
    wait = max(math.ceil(down.back_at - now), 1)
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(down.back_at))
    headers = {"Retry-After": str(wait)}
    if down.reason == "rate_limited":
        error: ProxyError = RateLimited(
            f"Every deployment of the model '{model}' is rate limited (a provider's Retry-After, or its own rpm or "
            f"tpm); the first is available again at {at} (in {wait}s).", code="upstream_rate_limited", headers=headers)
        return Failure("rate_limited", "upstream_rate_limited", 429, "rate_limited", False, error=error)
    error = ServiceUnavailable(
        f"Every deployment of the model '{model}' is cooling down after failures; the first is probed again at "
        f"{at} (in {wait}s).", code="upstream_cooling_down", headers=headers)
    return Failure("connect", "upstream_cooling_down", 503, "unavailable", False, error=error)


def retry_after_seconds(headers: CIMultiDict[str]) -> float:
    """From retry-after-ms or Retry-After in seconds (an HTTP date is not worth its parse); 0 when absent."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds > 0:
            return min(seconds, MAX_RETRY_AFTER_SECONDS)
    return 0.0


def _context_window(body: bytes) -> bool:
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    if not isinstance(error, dict):
        return False
    message = str(error.get("message", ""))
    return error.get("code") in CONTEXT_CODES or any(words in message for words in CONTEXT_MESSAGES)
