"""How thriftgate's requests are recorded as metrics (defined in accounting/metric_families.py), and
what /metrics renders.

Label values are bounded: a model outside the priced or configured set is reported as `other`,
a team outside the configured set as `other`, and no key, user or prompt is ever a label.

Under `serve --workers N` each worker writes its values to files in PROMETHEUS_MULTIPROC_DIR and
/metrics reads them all (`multiprocess_exposition`).
"""

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from proxy.exchange import Exchange, Saving
from proxy.accounting.metric_families import MetricFamilies
from proxy.accounting.money import NANOS_PER_USD
from proxy.accounting.usage import Usage

OTHER = "other"
NO_TEAM = "none"


class Metrics(MetricFamilies):
    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self, registry: CollectorRegistry, models: Iterable[str], teams: Iterable[str] = (), tags: Iterable[str] = (),
        *, exposition: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(registry)
        self._children: dict[tuple, object] = {}
        self._endpoints: dict[str, _Series] = {}
        self._upstreams: dict[str, _Series] = {}
        self._exposition = exposition or registry  # what /metrics renders
        self._models = frozenset(models)
        self._teams = frozenset(teams)
        self._tags = frozenset(tags)

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
        self._child(self.budget_remaining_usd, scope, window).set(nanos / NANOS_PER_USD)

    def budget_used(self, scope: str, window: str, ratio: float) -> None:
        self._child(self.budget_used_ratio, scope, window).set(ratio)

    def budget_alert(self, scope: str, threshold: float, result: str) -> None:
        self.budget_alerts.labels(scope, f"{threshold:g}", result).inc()

    def budget_rejection(self, scope_kind: str) -> None:
        self.budget_rejections.labels(scope_kind).inc()

    def upstream_up(self, upstream: str, up: bool) -> None:
        self.upstream_is_up.labels(upstream).set(1 if up else 0)

    def upstream_attempt(self, upstream: str, outcome: str) -> None:
        self._child(self.upstream_attempts, upstream, outcome).inc()

    def fallback(self, source: str, target: str, reason: str) -> None:
        self._child(self.fallbacks, self.model_label(source), self.model_label(target), reason).inc()

    def policy_action(self, policy: str, action: str) -> None:
        self._child(self.policy_actions, policy, action).inc()

    def policy_error(self, policy: str, hook: str) -> None:
        self._child(self.policy_errors, policy, hook).inc()

    def lookup(self, policy: str, result: str) -> None:
        self._child(self.lookups, policy, result).inc()

    def lookup_verification(self, policy: str, verdict: str, remembered: bool) -> None:
        self._child(self.lookup_verifications, policy, verdict, str(remembered).lower()).inc()

    def lookup_ignored(self, reason: str) -> None:
        self.lookup_ignored_entries.labels(reason).inc()

    def saving(self, saving: Saving) -> None:
        # A counter only goes up: an escalated cascade's extra cost shows in spend, not here.
        if saving.nanos > 0:
            self._child(self.savings, saving.mechanism, saving.policy, saving.basis).inc(saving.nanos / NANOS_PER_USD)

    def model_label(self, model: str) -> str:
        return model if model in self._models else OTHER

    def team_label(self, team: str | None) -> str:
        if team is None:
            return NO_TEAM
        return team if team in self._teams else OTHER

    def observe(self, ex: Exchange) -> None:
        model = self.model_label(ex.model) if ex.model else OTHER
        status, upstream = ex.status, ex.upstream
        endpoint = self._endpoint(ex.endpoint)
        endpoint.answered(model, status)
        endpoint.duration(ex.latency_seconds)
        endpoint.overhead(ex.overhead_seconds)
        if upstream is not None:
            series = self._upstream(upstream.name)
            if ex.upstream_started is not None:
                series.answered(status)
            if ex.upstream_seconds is not None:
                series.duration(ex.upstream_seconds)
        if ex.time_to_first_token is not None:
            self._child(self.time_to_first_token, model).observe(ex.time_to_first_token)
        self._spent(ex, model)
        if ex.cost_nanos is None and ex.endpoint != "passthrough" and ex.model:  # as the ledger counts it (_UNPRICED)
            self._child(self.unpriced, model).inc()
        for tag in ex.tags & self._tags if ex.tags else ():
            self._child(self.tag_requests, tag).inc()

    def observe_attempt(self, ex: Exchange) -> None:
        """A failed attempt of a request: the upstream's metrics and, when billed, spend; not a request."""
        series = self._upstream(ex.upstream.name if ex.upstream is not None else OTHER)
        series.answered(ex.status)
        if ex.upstream_seconds is not None:
            series.duration(ex.upstream_seconds)
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

    def _endpoint(self, endpoint: str) -> "_Series":
        try:
            return self._endpoints[endpoint]
        except KeyError:
            found = self._endpoints[endpoint] = _Series(
                self.requests, endpoint, self._child(self.request_duration, endpoint).observe,
                self._child(self.overhead, endpoint).observe)
            return found

    def _upstream(self, name: str) -> "_Series":
        try:
            return self._upstreams[name]
        except KeyError:
            found = self._upstreams[name] = _Series(self.upstream_requests, name, _Lazy(self.upstream_duration, name))
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


class _Series:
    """The request metrics of one endpoint or upstream, bound when it is first seen: a request costs a dict
    lookup and the increments, not a label lookup per metric. The answers' counter is bound per label set on
    its first use (a series shows in /metrics once it has a value, as with labels())."""

    __slots__ = ("_counter", "_first", "_incs", "duration", "overhead")

    def __init__(self, counter, first_label: str, duration, overhead=None) -> None:
        self._counter, self._first = counter, first_label
        self._incs: dict[tuple, object] = {}
        self.duration, self.overhead = duration, overhead

    def answered(self, *labels: str | int) -> None:
        """Counts one answer with these further label values (an int status among them)."""
        try:
            inc = self._incs[labels]
        except KeyError:
            inc = self._incs[labels] = self._counter.labels(self._first, *map(str, labels)).inc
        inc()


class _Lazy:
    """A histogram child's observe, made on the first observation (an upstream answered without a timing
    has no duration series yet)."""

    __slots__ = ("_histogram", "_label", "_observe")

    def __init__(self, histogram, label: str) -> None:
        self._histogram, self._label, self._observe = histogram, label, None

    def __call__(self, value: float) -> None:
        if self._observe is None:
            self._observe = self._histogram.labels(self._label).observe
        self._observe(value)


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
