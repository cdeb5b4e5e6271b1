"""The record stage: each answered request, exactly once, to the ledger, the metrics and the access log."""

import dataclasses
import itertools
import logging
import time

import orjson

from proxy.exchange import Exchange
from proxy.accounting.ledger import BatchedLedger as Ledger
from proxy.accounting.spend_record import SpendRecord
from proxy.lookup.trace import ledger_column
from proxy.stages.tags import tags_column
from proxy.accounting.language import count_words, metric_label
from proxy.accounting.metrics import Metrics
from proxy.accounting.usage import Usage

access_log = logging.getLogger("thriftgate.access")


_RECORD_FIELDS = tuple(field.name for field in dataclasses.fields(SpendRecord))
UNTAGGED_WORDS_SAMPLE = 8
_untagged_answers = itertools.count()


class Recorder:
    def __init__(
        self, ledger: Ledger, metrics: Metrics, *, access_log_enabled: bool, log_prompts: bool = False
    ) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self._access_log = access_log_enabled
        self._log_prompts = log_prompts

    def record(self, ex: Exchange) -> None:
        ex.finished = time.perf_counter()
        record = spend_record(ex)
        self._ledger.add(record)
        self._metrics.observe(ex)
        if record.output_words:
            visible = record.completion_tokens - record.reasoning_tokens
            self._metrics.words(ex.model, metric_label(ex.language), record.output_words, visible)
        if self._access_log:
            access_log.info(self._access_line(ex, record))

    def record_attempt(self, ex: Exchange) -> None:
        """A failed attempt of a request (it has `parent_id` and its own timings): a ledger row and the
        upstream's metrics, never a request of its own in the request metrics."""
        record = spend_record(ex)
        self._ledger.add(record)
        self._metrics.observe_attempt(ex)
        if self._access_log:
            access_log.info(self._access_line(ex, record))

    def _access_line(self, ex: Exchange, record: SpendRecord) -> str:
        """The ledger row as one JSON line; prompt text only when the operator asked for it."""
        prompt = self._log_prompts and ex.body is not None and ex.endpoint != "passthrough"
        if record.policies is None and record.lookups is None and not prompt:
            return orjson.dumps(record).decode()
        line = {name: getattr(record, name) for name in _RECORD_FIELDS}
        for column in ("policies", "lookups"):
            if line[column] is not None:
                line[column] = orjson.Fragment(line[column])  # an object, not a string of JSON
        if prompt:
            line["prompt"] = ex.dialect.last_user_text(ex.body)
        return orjson.dumps(line).decode()


def spend_record(ex: Exchange) -> SpendRecord:
    usage = ex.usage or Usage()
    return SpendRecord(
        request_id=ex.request_id, ts=ex.received_at, endpoint=ex.endpoint,
        requested_model=ex.requested_model, model=ex.model,
        upstream=ex.upstream.name if ex.upstream else "",
        key_id=ex.key_id, team=ex.team, user=ex.user,
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
        cached_prompt_tokens=usage.cached_prompt_tokens, cache_write_tokens=usage.cache_write_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        reasoning_tokens=usage.reasoning_tokens, cost_nanos=ex.cost_nanos, usage_source=usage.source,
        status=ex.status, stream=ex.stream, latency_ms=round(ex.latency_seconds * 1000, 3),
        client_disconnected=ex.client_disconnected, error=ex.error_code,
        policies=_policies_column(ex), savings_nanos=sum(s.nanos for s in ex.savings if s.basis != "shadow"),
        lookups=ledger_column(ex.lookups), tags=tags_column(ex.tags), attempt=ex.attempts, parent_id=ex.parent_id,
        fallback=ex.fallback_reason, truncated=ex.truncated, **request_facts(ex),
    )


def request_facts(ex: Exchange) -> dict:
    """What `thriftgate whatif` re-evaluates policy conditions on, and the answer's words (no text is kept).

    Costs a few microseconds: images are looked for only in a body that names one (a byte scan first), and
    words (a split, ~15 us for 300 words) are counted for every tagged answer but one untagged answer in
    UNTAGGED_WORDS_SAMPLE: tokens per word is a ratio, which a sample measures as well."""
    facts = {"language": ex.language}
    body, dialect = ex.body, ex.dialect
    if body is None or ex.endpoint == "passthrough":
        return facts
    facts.update(max_output_tokens=ex.requested_max_output_tokens, has_tools=dialect.has_tools(body),
                 has_images=b"image" in ex.raw_body and dialect.has_images(body),
                 has_response_format=dialect.has_response_format(body))
    # Words of prose only: an answer that may be a tool call or JSON is not counted.
    if 0 < ex.status < 400 and not ex.stream and ex.answer is not None and not (
            facts["has_tools"] or facts["has_response_format"]) and (
            ex.language or next(_untagged_answers) % UNTAGGED_WORDS_SAMPLE == 0):
        facts["output_words"] = count_words(dialect.answer_text(ex.answer)) or None
    return facts


def _policies_column(ex: Exchange) -> str | None:
    """Per policy: what happened to this request, and what it saved (JSON, for `thriftgate savings`)."""
    if not ex.policy_marks:
        return None
    column: dict[str, dict] = {name: {"mark": mark} for name, mark in ex.policy_marks.items()}
    for saving in ex.savings:
        entry = column.setdefault(saving.policy, {})
        entry.update(mechanism=saving.mechanism, basis=saving.basis,
                     saved_nanos=entry.get("saved_nanos", 0) + saving.nanos)
    return orjson.dumps(column).decode()
