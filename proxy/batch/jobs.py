"""A Batch API job in thriftgate's terms: its input file summed up for a reservation, what the proxy remembers
of it until it ends, and its output file turned into one priced ledger row per line.

OpenAI's format (https://platform.openai.com/docs/guides/batch): the input is JSON lines of
{custom_id, method, url, body} for one endpoint and one model; the output, lines of
{id, custom_id, response: {status_code, request_id, body}, error}; failed requests go to an error file in
the same shape. Every answered line is priced at the model's batch rate (PriceTable.batch_cost_nanos: half
the synchronous price at OpenAI and Anthropic), or at its full rate when none is known.
"""

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from proxy import openai_wire as wire
from proxy.accounting.ledger import SpendRecord
from proxy.accounting.pricing import PriceTable
from proxy.accounting.usage import Usage
from proxy.dialects.ingress import INGRESS
from proxy.errors import BadRequest
from proxy.stages.tags import tags_column

log = logging.getLogger("thriftgate.batch")

# The endpoints OpenAI's Batch API runs, and the ledger's name for each.
ENDPOINTS = {path: dialect for path, dialect in INGRESS.items()
             if path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")}
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# A batch has 24 hours to run (and an hour's margin): its job is remembered a week beyond.
RUN_SECONDS = 25 * 3600
BATCH_TAG = "batch"

PromptCounter = Callable[[str, Any, dict[str, Any]], int]  # (model, dialect, body) -> prompt tokens


@dataclass(frozen=True, slots=True)
class InputSummary:
    model: str
    lines: int
    prompt_tokens: int
    output_tokens: int  # the output limits, summed: what the lines may generate at most


def read_input(content: bytes, endpoint_path: str, count_prompt: PromptCounter, default_output: int) -> InputSummary:
    """Sums up an input file; a 400 naming the line for anything the Batch API would reject."""
    dialect = ENDPOINTS[endpoint_path]
    model, lines, prompt, output = "", 0, 0, 0
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"input file line {number}"
        try:
            request = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise BadRequest(f"{where} is not JSON.", param="input_file_id") from None
        if not isinstance(request, dict) or not isinstance(request.get("body"), dict):
            raise BadRequest(f"{where}: expected an object with a 'body' object.", param="input_file_id")
        if request.get("url") != endpoint_path:
            raise BadRequest(f"{where}: its url {request.get('url')!r} is not the batch's endpoint {endpoint_path}.",
                             param="input_file_id")
        body = request["body"]
        try:
            facts = dialect.facts(body)
            tokens = count_prompt(facts.model, dialect, body)
        except BadRequest as err:
            raise BadRequest(f"{where}: {err.message}", param="input_file_id") from None
        except ValueError as exc:
            raise BadRequest(f"{where}: {exc}", param="input_file_id") from None
        if model and facts.model != model:
            raise BadRequest(f"{where} asks for {facts.model!r}, an earlier line for {model!r}: a batch runs one "
                             "model.", param="input_file_id")
        model = facts.model
        limit = 0 if dialect.endpoint == "embeddings" else (facts.max_output_tokens or default_output)
        lines, prompt, output = lines + 1, prompt + tokens, output + limit * wire.choices(dialect.endpoint, body)
    if not lines:
        raise BadRequest("The input file holds no requests.", param="input_file_id")
    return InputSummary(model, lines, prompt, output)


@dataclass(frozen=True, slots=True)
class Job:
    """What the proxy keeps of a batch from its creation to its end (in the store: any replica may see it end)."""

    batch_id: str
    endpoint: str  # chat, embeddings...
    model: str
    upstream: str
    key_id: str | None
    team: str | None
    user: str | None
    tags: str
    language: str | None
    created_at: float
    reserved_nanos: int
    hold_id: str
    counters: tuple[tuple[str, int], ...]  # (budget counter, ttl): what the settlement names
    accounted: bool = False

    def encode(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def decode(cls, text: str) -> "Job":
        data = orjson.loads(text)
        data["counters"] = tuple(tuple(pair) for pair in data["counters"])
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Line:
    record: SpendRecord
    usage: Usage
    full_price: bool  # the model has no batch rate: priced at its synchronous one


def output_lines(job: Job, batch: dict, content: bytes, prices: PriceTable) -> Iterator[Line]:
    """One priced ledger row per line of an output or error file."""
    dialect = ENDPOINTS.get(_path(job.endpoint))
    finished = _finished_at(batch)
    tags = tags_column(frozenset({BATCH_TAG, *filter(None, job.tags.split(","))}))
    for number, raw in enumerate(content.splitlines(), start=1):
        try:
            line = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError:
            line = None
        if not isinstance(line, dict):
            if raw.strip():
                log.warning("batch %s: line %d of a result file is not a JSON object; left out", job.batch_id, number)
            continue
        response = line.get("response") if isinstance(line.get("response"), dict) else {}
        body = response.get("body") if isinstance(response.get("body"), dict) else {}
        status = response.get("status_code") or 0
        usage = (dialect.usage_of_answer(body) if dialect and 200 <= status < 300 else None) or Usage()
        cost = prices.batch_cost_nanos(job.model, usage) if usage.total_tokens else 0
        full_price = cost is None and prices.lookup(job.model) is not None
        if cost is None:
            cost = prices.cost_nanos(job.model, usage)
        error = line.get("error") or (body.get("error") if status >= 400 else None)
        record = SpendRecord(
            request_id=f"{job.batch_id}/{line.get('custom_id') or line.get('id')}", ts=finished,
            endpoint=job.endpoint, requested_model=job.model, model=job.model, upstream=job.upstream,
            key_id=job.key_id, team=job.team, user=job.user, prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens, cached_prompt_tokens=usage.cached_prompt_tokens,
            cache_write_tokens=usage.cache_write_tokens, cache_write_1h_tokens=usage.cache_write_1h_tokens,
            reasoning_tokens=usage.reasoning_tokens, cost_nanos=cost, usage_source="upstream", status=status,
            stream=False, latency_ms=round((finished - job.created_at) * 1000, 3), client_disconnected=False,
            error=_error_code(error, status), tags=tags, language=job.language, batch_id=job.batch_id)
        yield Line(record, usage, full_price)


def _path(endpoint: str) -> str:
    return next((path for path, dialect in ENDPOINTS.items() if dialect.endpoint == endpoint), "")


def _finished_at(batch: dict) -> float:
    for field in ("completed_at", "failed_at", "expired_at", "cancelled_at"):
        if isinstance(batch.get(field), int | float):
            return float(batch[field])
    return time.time()


def _error_code(error: Any, status: int) -> str | None:
    if isinstance(error, dict):
        return str(error.get("code") or error.get("type") or f"batch_{status}")[:64]
    return f"batch_{status}" if status >= 400 or status == 0 else None
