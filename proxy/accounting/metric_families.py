"""Every metric thriftgate exports: its name, help text and labels, defined on an injected registry.

accounting/metrics.py records requests on them (label values, bounded); this module and that one are the
only importers of prometheus_client.

Under `serve --workers N` prometheus_client runs in multiprocess mode: each worker writes its values
to files in PROMETHEUS_MULTIPROC_DIR and /metrics reads them all. Counters and histograms add up
across workers by themselves; a Gauge must say how with `multiprocess_mode` (e.g. "mostrecent" for a
value every worker sets, "livesum" for one they share).

In one process the counters, histograms and set-only gauges keep their values as plain numbers (PlainCounter,
PlainHistogram, PlainGauge):
prometheus_client's own take a lock and run checks on every increment (~5k instructions a Counter.inc, ~10k a
Histogram.observe, measured with callgrind), and a request makes a dozen of them. Every value is written and read
on the event loop, so nothing needs the lock; /metrics renders them as prometheus_client renders its own.
"""

import bisect
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import values as prometheus_values

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# The proxy's own time is sub-millisecond when healthy: buckets resolve tens of microseconds.
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class MetricFamilies:
    """The metrics, as attributes (each a labelled Counter, Gauge or Histogram)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # Under --workers every value goes to the worker's files, through prometheus_client's own classes.
        multiprocess = prometheus_values.ValueClass._multiprocess
        counter, histogram = (Counter, Histogram) if multiprocess else (PlainCounter, PlainHistogram)
        settable = Gauge if multiprocess else PlainGauge  # a gauge only ever set (the in-process store's settles)
        self.requests = counter(
            "thriftgate_requests", "Requests answered, by endpoint, answering model and HTTP status.",
            ["endpoint", "model", "status"], registry=registry,
        )
        self.tokens = counter(
            "thriftgate_tokens", "Tokens by model and type: prompt (all input) = uncached_prompt + cached_prompt (read "
            "from the provider's prompt cache) + cache_write (written to it); completion, of which reasoning.",
            ["model", "type"], registry=registry,
        )
        self.spend = counter(
            "thriftgate_spend_usd", "Spend in US dollars by answering model and team.",
            ["model", "team"], registry=registry,
        )
        self.unpriced = counter(
            "thriftgate_unpriced_requests", "Requests to a model with no known price that used tokens.",
            ["model"], registry=registry,
        )
        self.upstream_requests = counter(
            "thriftgate_upstream_requests", "Requests sent to an upstream, by upstream and the HTTP status of its "
            "answer (502 when it could not be reached, 504 when it timed out).",
            ["upstream", "status"], registry=registry,
        )
        self.upstream_attempts = counter(
            "thriftgate_upstream_attempts", "Attempts sent to an upstream deployment, by how each ended: ok, "
            "rate_limited, server_error, client_error, connect, timeout, truncated (a stream cut after it began), "
            "cancelled (the client left).", ["upstream", "outcome"], registry=registry,
        )
        self.upstream_is_up = Gauge(
            "thriftgate_upstream_up", "1 while an upstream deployment is in rotation, 0 while it cools down after "
            "failures or rests after a Retry-After (fleet-wide with Redis).",
            ["upstream"], registry=registry, multiprocess_mode="mostrecent",
        )
        self.fallbacks = counter(
            "thriftgate_fallbacks", "Requests moved to a fallback model, by the model that failed, the one tried "
            "next and why (unavailable, rate_limited, context_window_exceeded).",
            ["from", "to", "reason"], registry=registry,
        )
        self.request_duration = histogram(
            "thriftgate_request_duration_seconds", "Whole request time as the client saw it.",
            ["endpoint"], buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.upstream_duration = histogram(
            "thriftgate_upstream_duration_seconds", "Time waiting for the upstream, to the end of its answer.",
            ["upstream"], buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.overhead = histogram(
            "thriftgate_overhead_seconds", "Time spent in the proxy itself (request time minus upstream time).",
            ["endpoint"], buckets=_OVERHEAD_BUCKETS, registry=registry,
        )
        self.time_to_first_token = histogram(
            "thriftgate_time_to_first_token_seconds", "Time from request arrival to the first streamed token.",
            ["model"], buckets=_LATENCY_BUCKETS, registry=registry,
        )

        self.policy_actions = counter(
            "thriftgate_policy_actions", "What policies did, by policy name and action (shadow_* in shadow mode).",
            ["policy", "action"], registry=registry,
        )
        self.policy_errors = counter(
            "thriftgate_policy_errors", "Policy hooks that raised, by policy name and hook.",
            ["policy", "hook"], registry=registry,
        )
        self.savings = counter(
            "thriftgate_savings_usd",
            "Money saved, by mechanism and policy; basis=counterfactual is exact on the tokens used, "
            "basis=holdout_estimate is measured against held-out traffic.",
            ["mechanism", "policy", "basis"], registry=registry,
        )
        self.lookups = counter(
            "thriftgate_lookups", "Lookups by policy and result: exact-hit, semantic-hit, answer-hit, miss, "
            "embedder_failed, store_down (shadow_* in shadow mode).", ["policy", "result"], registry=registry,
        )
        self.lookup_verifications = counter(
            "thriftgate_lookup_verifications", "Candidates a lookup's verifier judged: same, different or failed "
            "(an error or timeout: a miss); remembered=true when the decision was cached.",
            ["policy", "verdict", "remembered"], registry=registry,
        )
        self.lookup_ignored_entries = counter(
            "thriftgate_lookup_ignored_entries", "Stored lookup entries read back and never served: corrupt (does "
            "not decode) or foreign (not the entry asked for).", ["reason"], registry=registry,
        )
        self.output_words = counter(
            "thriftgate_output_words", "Words of whole text answers (docs/whatif.md: what a word is), by model and "
            "language (x-thriftgate-language's ISO 639-1 code, none, or other).", ["model", "language"],
            registry=registry,
        )
        self.output_words_tokens = counter(
            "thriftgate_output_words_tokens", "Visible output tokens of the answers counted in "
            "thriftgate_output_words_total: divide the two for tokens per word.", ["model", "language"],
            registry=registry,
        )
        self.batch_spend = counter(
            "thriftgate_batch_spend_usd", "Spend through a Batch API, at batch prices, by model and team (also in "
            "thriftgate_spend_usd_total).", ["model", "team"], registry=registry,
        )
        self.batch_lines = counter(
            "thriftgate_batch_lines", "Lines of finished Batch API jobs, by model and HTTP status of each.",
            ["model", "status"], registry=registry,
        )
        self.budget_remaining_usd = settable(
            "thriftgate_budget_remaining_usd",
            "USD left in a configured budget's current window after what it settled, as this replica last saw it "
            "(with Redis: the fleet's, as of this replica's last write or lease renewal).",
            ["scope", "window"], registry=registry, multiprocess_mode="mostrecent",
        )
        self.tag_requests = counter(
            "thriftgate_tag_requests", "Requests by tag, for the tags listed in tags.metrics.", ["tag"],
            registry=registry,
        )
        self.tag_spend = counter(
            "thriftgate_tag_spend_usd", "Spend in US dollars by tag, for the tags listed in tags.metrics.", ["tag"],
            registry=registry,
        )
        self.budget_used_ratio = settable(
            "thriftgate_budget_used_ratio",
            "Share of a configured usd budget settled in its current window (1 = all of it; a Batch API job's "
            "ceiling counts until its lines are priced), as this replica last saw it (with Redis: the fleet's, as "
            "of this replica's last write or lease renewal): for Alertmanager rules of your own.",
            ["scope", "window"], registry=registry, multiprocess_mode="mostrecent",
        )
        self.budget_alerts = counter(
            "thriftgate_budget_alerts", "Budget alert webhooks this replica sent (sent) or gave up on (failed).",
            ["scope", "threshold", "result"], registry=registry,
        )
        self.budget_rejections = counter(
            "thriftgate_budget_rejections", "Requests refused by a budget or rate limit, by the kind of scope.",
            ["scope_kind"], registry=registry,
        )


class _Number:
    """A value without prometheus_client's lock (MutexValue): read as it reads its own."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def get(self) -> float:
        return self.value

    def get_exemplar(self) -> None:
        return None


class PlainCounter(Counter):
    """A Counter whose labelled children add to a plain number (one process, the event loop only)."""

    def _metric_init(self) -> None:
        self._value = _Number()
        self._created = time.time()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self._value.value += amount


class PlainGauge(Gauge):
    """A Gauge whose labelled children hold a plain number, only ever set (one process, the event loop only)."""

    def _metric_init(self) -> None:
        self._value = _Number()

    def set(self, value: float) -> None:
        self._value.value = float(value)


class PlainHistogram(Histogram):
    """A Histogram whose labelled children count into plain numbers (one process, the event loop only)."""

    def _metric_init(self) -> None:
        self._created = time.time()
        self._sum = _Number()
        self._buckets = [_Number() for _ in self._upper_bounds]

    def observe(self, amount: float) -> None:
        self._sum.value += amount
        # The first bucket whose upper bound is at least the amount, as Histogram.observe counts it.
        self._buckets[bisect.bisect_left(self._upper_bounds, amount)].value += 1
