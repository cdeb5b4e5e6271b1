"""The only importer of prometheus_client. Every metric is defined here, on an injected registry.

Label values are bounded: a model outside the priced or configured set is reported as `other`,
a team outside the configured set as `other`, and no key, user or prompt is ever a label.

Under `serve --workers N` prometheus_client runs in multiprocess mode: each worker writes its values
to files in PROMETHEUS_MULTIPROC_DIR and /metrics reads them all (`multiprocess_exposition`).
Counters and histograms add up across workers by themselves; a Gauge must say how with
`multiprocess_mode` (e.g. "mostrecent" for a value every worker sets, "livesum" for one they share).
"""

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from proxy.exchange import Exchange, Saving
from proxy.accounting.money import NANOS_PER_USD
from proxy.accounting.usage import Usage

OTHER = "other"
NO_TEAM = "none"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# The proxy's own time is sub-millisecond when healthy: buckets resolve tens of microseconds.
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self, registry: CollectorRegistry, models: Iterable[str], teams: Iterable[str] = (), tags: Iterable[str] = (),
        *, exposition: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry
        self._children: dict[tuple, object] = {}
        self._exposition = exposition or registry  # what /metrics renders
        self._models = frozenset(models)
        self._teams = frozenset(teams)
        self._tags = frozenset(tags)
        self.requests = Counter(
            "thriftgate_requests", "Requests answered, by endpoint, answering model and HTTP status.",
            ["endpoint", "model", "status"], registry=registry,
        )
        self.tokens = Counter(
            "thriftgate_tokens", "Tokens by model and type: prompt (all input) = uncached_prompt + cached_prompt (read "
            "from the provider's prompt cache) + cache_write (written to it); completion, of which reasoning.",
            ["model", "type"], registry=registry,
        )
        self.spend = Counter(
            "thriftgate_spend_usd", "Spend in US dollars by answering model and team.",
            ["model", "team"], registry=registry,
        )
        self.unpriced = Counter(
            "thriftgate_unpriced_requests", "Requests to a model with no known price that used tokens.",
            ["model"], registry=registry,
        )
        self.upstream_requests = Counter(
            "thriftgate_upstream_requests", "Requests sent to an upstream, by upstream and the HTTP status of its "
            "answer (502 when it could not be reached, 504 when it timed out).",
            ["upstream", "status"], registry=registry,
        )
        self.upstream_attempts = Counter(
            "thriftgate_upstream_attempts", "Attempts sent to an upstream deployment, by how each ended: ok, "
            "rate_limited, server_error, client_error, connect, timeout, truncated (a stream cut after it began), "
            "cancelled (the client left).", ["upstream", "outcome"], registry=registry,
        )
        self.upstream_is_up = Gauge(
            "thriftgate_upstream_up", "1 while an upstream deployment is in rotation, 0 while it cools down after "
            "failures or rests after a Retry-After (fleet-wide with Redis).",
            ["upstream"], registry=registry, multiprocess_mode="mostrecent",
        )
        self.fallbacks = Counter(
            "thriftgate_fallbacks", "Requests moved to a fallback model, by the model that failed, the one tried "
            "next and why (unavailable, rate_limited, context_window_exceeded).",
            ["from", "to", "reason"], registry=registry,
        )
        self.request_duration = Histogram(
            "thriftgate_request_duration_seconds", "Whole request time as the client saw it.",
            ["endpoint"], buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.upstream_duration = Histogram(
            "thriftgate_upstream_duration_seconds", "Time waiting for the upstream, to the end of its answer.",
            ["upstream"], buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.overhead = Histogram(
            "thriftgate_overhead_seconds", "Time spent in the proxy itself (request time minus upstream time).",
            ["endpoint"], buckets=_OVERHEAD_BUCKETS, registry=registry,
        )
        self.time_to_first_token = Histogram(
            "thriftgate_time_to_first_token_seconds", "Time from request arrival to the first streamed token.",
            ["model"], buckets=_LATENCY_BUCKETS, registry=registry,
        )

        self.policy_actions = Counter(
            "thriftgate_policy_actions", "What policies did, by policy name and action (shadow_* in shadow mode).",
            ["policy", "action"], registry=registry,
        )
        self.policy_errors = Counter(
            "thriftgate_policy_errors", "Policy hooks that raised, by policy name and hook.",
            ["policy", "hook"], registry=registry,
        )
        self.savings = Counter(
            "thriftgate_savings_usd",
            "Money saved, by mechanism and policy; basis=counterfactual is exact on the tokens used, "
            "basis=holdout_estimate is measured against held-out traffic.",
            ["mechanism", "policy", "basis"], registry=registry,
        )
        self.lookups = Counter(
            "thriftgate_lookups", "Lookups by policy and result: exact-hit, semantic-hit, answer-hit, miss, "
            "embedder_failed, store_down (shadow_* in shadow mode).", ["policy", "result"], registry=registry,
        )
        self.lookup_verifications = Counter(
            "thriftgate_lookup_verifications", "Candidates a lookup's verifier judged: same, different or failed "
            "(an error or timeout: a miss); remembered=true when the decision was cached.",
            ["policy", "verdict", "remembered"], registry=registry,
        )
        self.lookup_ignored_entries = Counter(
            "thriftgate_lookup_ignored_entries", "Stored lookup entries read back and never served: corrupt (does "
            "not decode) or foreign (not the entry asked for).", ["reason"], registry=registry,
        )
        self.output_words = Counter(
            "thriftgate_output_words", "Words of whole text answers (docs/whatif.md: what a word is), by model and "
            "language (x-thriftgate-language's ISO 639-1 code, none, or other).", ["model", "language"],
            registry=registry,
        )
        self.output_words_tokens = Counter(
            "thriftgate_output_words_tokens", "Visible output tokens of the answers counted in "
            "thriftgate_output_words_total: divide the two for tokens per word.", ["model", "language"],
            registry=registry,
        )
        self.batch_spend = Counter(
            "thriftgate_batch_spend_usd", "Spend through a Batch API, at batch prices, by model and team (also in "
            "thriftgate_spend_usd_total).", ["model", "team"], registry=registry,
        )
        self.batch_lines = Counter(
            "thriftgate_batch_lines", "Lines of finished Batch API jobs, by model and HTTP status of each.",
            ["model", "status"], registry=registry,
        )
        self.budget_remaining_usd = Gauge(
            "thriftgate_budget_remaining_usd",
            "USD left in a configured budget's current window after what it settled, as this replica last saw it "
            "(with Redis: the fleet's, as of this replica's last write or lease renewal).",
            ["scope", "window"], registry=registry, multiprocess_mode="mostrecent",
        )
        self.tag_requests = Counter(
            "thriftgate_tag_requests", "Requests by tag, for the tags listed in tags.metrics.", ["tag"],
            registry=registry,
        )
        self.tag_spend = Counter(
            "thriftgate_tag_spend_usd", "Spend in US dollars by tag, for the tags listed in tags.metrics.", ["tag"],
            registry=registry,
        )
        self.budget_used_ratio = Gauge(
            "thriftgate_budget_used_ratio",
            "Share of a configured usd budget settled in its current window (1 = all of it; a Batch API job's "
            "ceiling counts until its lines are priced), as this replica last saw it (with Redis: the fleet's, as "
            "of this replica's last write or lease renewal): for Alertmanager rules of your own.",
            ["scope", "window"], registry=registry, multiprocess_mode="mostrecent",
        )
        self.budget_alerts = Counter(
            "thriftgate_budget_alerts", "Budget alert webhooks this replica sent (sent) or gave up on (failed).",
            ["scope", "threshold", "result"], registry=registry,
        )
        self.budget_rejections = Counter(
            "thriftgate_budget_rejections", "Requests refused by a budget or rate limit, by the kind of scope.",
            ["scope_kind"], registry=registry,
        )

    def words(self, model: str, language: str, words: int, tokens: int) -> None:
        self._child(self.output_words, self.model_label(model), language).inc(words)
        self._child(self.output_words_tokens, self.model_label(model), language).inc(tokens)

    def batch_line(self, model: str, team: str | None, status: int, usage: Usage, cost_nanos: int | None) -> None:
        """One answered line of a Batch API job: counted like a request's tokens and spend, and apart as batch."""
        model = self.model_label(model)
        self._child(self.batch_lines, model, str(status)).inc()
        if usage.total_tokens:
            self._count_tokens(model, usage)
        if cost_nanos:
            self._child(self.spend, model, self.team_label(team)).inc(cost_nanos / NANOS_PER_USD)
            self._child(self.batch_spend, model, self.team_label(team)).inc(cost_nanos / NANOS_PER_USD)
        elif cost_nanos is None and usage.total_tokens:
            self._child(self.unpriced, model).inc()

    def budget_remaining(self, scope: str, window: str, nanos: int) -> None:
        self.budget_remaining_usd.labels(scope, window).set(nanos / NANOS_PER_USD)

    def budget_used(self, scope: str, window: str, ratio: float) -> None:
        self.budget_used_ratio.labels(scope, window).set(ratio)

    def budget_alert(self, scope: str, threshold: float, result: str) -> None:
        self.budget_alerts.labels(scope, f"{threshold:g}", result).inc()

    def budget_rejection(self, scope_kind: str) -> None:
        self.budget_rejections.labels(scope_kind).inc()

    def upstream_up(self, upstream: str, up: bool) -> None:
        self.upstream_is_up.labels(upstream).set(1 if up else 0)

    def upstream_attempt(self, upstream: str, outcome: str) -> None:
        self._child(self.upstream_attempts, upstream, outcome).inc()

    def fallback(self, source: str, target: str, reason: str) -> None:
        self.fallbacks.labels(self.model_label(source), self.model_label(target), reason).inc()

    def policy_action(self, policy: str, action: str) -> None:
        self.policy_actions.labels(policy, action).inc()

    def policy_error(self, policy: str, hook: str) -> None:
        self.policy_errors.labels(policy, hook).inc()

    def lookup(self, policy: str, result: str) -> None:
        self.lookups.labels(policy, result).inc()

    def lookup_verification(self, policy: str, verdict: str, remembered: bool) -> None:
        self.lookup_verifications.labels(policy, verdict, str(remembered).lower()).inc()

    def lookup_ignored(self, reason: str) -> None:
        self.lookup_ignored_entries.labels(reason).inc()

    def saving(self, saving: Saving) -> None:
        # A counter only goes up: an escalated cascade's extra cost shows in spend, not here.
        if saving.nanos > 0:
            self.savings.labels(saving.mechanism, saving.policy, saving.basis).inc(saving.nanos / NANOS_PER_USD)

    def model_label(self, model: str) -> str:
        return model if model in self._models else OTHER

    def team_label(self, team: str | None) -> str:
        if team is None:
            return NO_TEAM
        return team if team in self._teams else OTHER

    def observe(self, ex: Exchange) -> None:
        child = self._child
        model = self.model_label(ex.model) if ex.model else OTHER
        child(self.requests, ex.endpoint, model, str(ex.status)).inc()
        child(self.request_duration, ex.endpoint).observe(ex.latency_seconds)
        child(self.overhead, ex.endpoint).observe(ex.overhead_seconds)
        if ex.upstream is not None and ex.upstream_started is not None:
            child(self.upstream_requests, ex.upstream.name, str(ex.status)).inc()
        if ex.upstream is not None and ex.upstream_seconds is not None:
            child(self.upstream_duration, ex.upstream.name).observe(ex.upstream_seconds)
        if ex.time_to_first_token is not None:
            child(self.time_to_first_token, model).observe(ex.time_to_first_token)
        self._spent(ex, model)
        if ex.cost_nanos is None and ex.endpoint != "passthrough" and ex.model:  # as the ledger counts it (_UNPRICED)
            child(self.unpriced, model).inc()
        for tag in ex.tags & self._tags if ex.tags else ():
            child(self.tag_requests, tag).inc()

    def observe_attempt(self, ex: Exchange) -> None:
        """A failed attempt of a request: the upstream's metrics and, when billed, spend; not a request."""
        name = ex.upstream.name if ex.upstream is not None else OTHER
        self._child(self.upstream_requests, name, str(ex.status)).inc()
        if ex.upstream_seconds is not None:
            self._child(self.upstream_duration, name).observe(ex.upstream_seconds)
        self._spent(ex, self.model_label(ex.model))

    def _spent(self, ex: Exchange, model: str) -> None:
        usage = ex.usage
        if usage is not None and usage.total_tokens:
            self._count_tokens(model, usage)
        if ex.cost_nanos:
            self._child(self.spend, model, self.team_label(ex.team)).inc(ex.cost_nanos / NANOS_PER_USD)
            for tag in ex.tags & self._tags if ex.tags else ():  # configured tags only: bounded labels
                self._child(self.tag_spend, tag).inc(ex.cost_nanos / NANOS_PER_USD)

    def _child(self, metric, *values: str):
        """labels() validates and takes a lock on every call; label sets are bounded, so keep the children."""
        key = (metric, values)
        try:
            return self._children[key]
        except KeyError:
            found = self._children[key] = metric.labels(*values)
            return found

    def _count_tokens(self, model: str, usage: Usage) -> None:
        uncached = usage.prompt_tokens - usage.cached_prompt_tokens - usage.cache_write_tokens
        for kind, count in (("prompt", usage.prompt_tokens), ("completion", usage.completion_tokens),
                            ("uncached_prompt", uncached), ("cached_prompt", usage.cached_prompt_tokens),
                            ("cache_write", usage.cache_write_tokens), ("reasoning", usage.reasoning_tokens)):
            if count > 0:
                self._child(self.tokens, model, kind).inc(count)

    def render(self) -> bytes:
        return generate_latest(self._exposition)


def multiprocess_exposition(directory: str) -> CollectorRegistry:
    """Every worker's metric files in `directory`, added up: what /metrics serves under --workers N.

    A registry of its own: the metrics themselves stay on the worker's registry, so that its own
    values are not exported twice."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return registry


def forget_dead_worker(pid: int, directory: str) -> None:
    """Drops a dead worker's live-gauge files; its counters and histograms stay in the totals."""
    mark_process_dead(pid, directory)
