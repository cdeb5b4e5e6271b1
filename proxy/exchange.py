"""Exchange: the state of one request, carried from stage to stage (like mitmproxy's flow)."""

import itertools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from proxy.accounting.usage import Usage
from proxy.upstream_types import Upstream

# (model, dialect, body) -> the prompt's tokens for that model: stages.count.prompt_counter makes one.
PromptCounter = Callable[[str, Any, dict[str, Any]], int]


@dataclass(frozen=True, slots=True)
class Saving:
    """Money a policy saved (or, when negative, cost) on one request."""

    policy: str
    mechanism: str  # routing | cascade | lookup | concise | cap | prompt_cache
    nanos: int
    basis: str = "counterfactual"  # counterfactual: exact on the tokens used | holdout_estimate


_ID_PREFIX = os.urandom(6).hex()  # per process: ids stay unique across replicas and restarts
_id_counter = itertools.count()


def new_request_id() -> str:
    """Unique, not secret (ids are looked up only through the guarded admin API): no syscall per request."""
    return f"tg-{_ID_PREFIX}{next(_id_counter):012x}"


@dataclass(slots=True, eq=False)
class Exchange:
    request: web.Request
    endpoint: str  # chat | completions | embeddings | responses | messages | count_tokens | passthrough
    dialect: Any = None  # proxy.dialects.Dialect: the wire format the client speaks, asked about its body
    upstream_path: str = ""  # what follows the upstream's base URL: the normalised path and the client's query
    request_id: str = field(default_factory=new_request_id)
    received_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)

    body: dict[str, Any] | None = None
    raw_body: bytes = b""
    body_changed: bool = False  # re-encode only when a stage edited the body
    requested_model: str = ""
    model: str = ""  # the model that answers, after routing
    stream: bool = False
    client_wants_usage: bool = False
    max_output_tokens: int | None = None
    upstream: Upstream | None = None
    prompt_cache: Any = None  # a prompt_cache policy's plan: breakpoints an Anthropic upstream's leg places
    tags: frozenset[str] = frozenset()  # from the x-thriftgate-tags header
    language: str | None = None  # from the x-thriftgate-language header (BCP 47, lower case)
    requested_max_output_tokens: int | None = None  # the client's own output limit, before any policy's
    count_prompt: PromptCounter | None = None  # set by the pipeline so stages can count the prompt
    _prompt_count: tuple[str, int, int] | None = None  # (model, body edits, count)
    body_edits: int = 0

    policy_marks: dict[str, str] = field(default_factory=dict)  # policy name -> treated | held_out | shadow:...
    applied: list[str] = field(default_factory=list)  # names of the policies that changed this request
    savings: list[Saving] = field(default_factory=list)
    early_response: web.StreamResponse | None = None  # set by a policy that answers itself
    shadow: bool = False  # a copy a shadow-mode policy runs on: what it pays for must still be recorded
    answer_headers: dict[str, str] | None = None  # added by policies to the answer's headers
    # Lookup policy name -> what it did (lookup.trace.LookupTrace). Deliberately shared with a shadow
    # probe (hooks._probe_copy is shallow): what a shadow lookup found is recorded on the real request.
    lookups: dict[str, Any] = field(default_factory=dict)

    key_id: str | None = None
    team: str | None = None
    user: str | None = None
    key_budget_nanos: int | None = None  # the key's own daily USD budget, when it was created with one
    upstream_headers: Mapping[str, str] | None = None  # the client's headers minus its thriftgate key
    reservation: Any = None  # budget.Reservation: what the reserve stage held, settled at the end

    status: int = 0
    error_code: str | None = None
    usage: Usage | None = None
    partial_usage: Usage | None = None  # a stream cut short: what the upstream reported at its start
    settled: bool = False
    cost_nanos: int | None = None
    side_cost_nanos: int = 0  # paid beside the answer (a lookup's embedding call): part of cost_nanos
    output_text: list[str] = field(default_factory=list)  # kept only to count output without usage
    answer: Any = None  # the parsed whole 2xx answer, for hooks that read it after (a cache write)
    stream_events: Iterable[bytes] = ()  # a stream's relayed events, split lazily, for hooks that read them after
    client_disconnected: bool = False

    upstream_started: float | None = None
    upstream_seconds: float | None = None
    first_token_at: float | None = None
    finished: float | None = None

    def edit_body(self) -> None:
        """Every stage that changes the body says so: it is re-encoded, and recounted when asked."""
        self.body_changed = True
        self.body_edits += 1

    def set_model(self, model: str) -> None:
        self.model = model
        if self.body is not None:
            self.body["model"] = model
        self.edit_body()

    def prompt_tokens(self) -> int:
        """The prompt counted for the model that will answer; memoised until the body or model changes."""
        memo = self._prompt_count
        if memo is not None and memo[0] == self.model and memo[1] == self.body_edits:
            return memo[2]
        assert self.count_prompt is not None and self.body is not None
        count = self.count_prompt(self.model, self.dialect, self.body)
        self._prompt_count = (self.model, self.body_edits, count)
        return count

    def client_headers(self) -> Mapping[str, str]:
        """The client's headers for the upstream: without its thriftgate key (the proxy's key goes instead)."""
        return self.request.headers if self.upstream_headers is None else self.upstream_headers

    def forward_body(self) -> bytes:
        if self.body_changed:
            return orjson.dumps(self.body)
        return self.raw_body

    @property
    def latency_seconds(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def overhead_seconds(self) -> float:
        """Time spent in the proxy itself: everything but waiting for the upstream."""
        return max(self.latency_seconds - (self.upstream_seconds or 0.0), 0.0)

    @property
    def time_to_first_token(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started
