"""/v1/files and /v1/batches: OpenAI's Batch API through the proxy, with keys, budgets and every line priced.

- Files are relayed with the proxy's key (an upload streams through, never held whole).
- Creating a batch reads its input file from the upstream, sums it up (jobs.read_input) and holds the lines'
  batch-priced ceiling on every usd budget they touch (Budgets.reserve_batch) before the batch is created:
  a batch that does not fit is refused with a 429 and never reaches the provider. Once the provider took it,
  the ceiling counts as spent (Budgets.commit_batch). The job is kept in the store (any replica may see it
  end) and in this replica, which polls it.
- When a retrieve, a list, a cancel or the poller sees a batch end (completed, expired, cancelled, failed),
  one replica (a store lease) reads its output and error files and records one ledger row per line (tag
  `batch`), priced at the batch rate; the budgets settle the difference between the ceiling and the job's
  real cost. Off the request's path.
The handled requests themselves are refused, settled and recorded by the pipeline like any other.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from urllib.parse import quote

import orjson
from aiohttp import web

from proxy.accounting.language import HEADER as LANGUAGE_HEADER
from proxy.accounting.language import language_of
from proxy.accounting.ledger import Ledger
from proxy.accounting.metrics import Metrics
from proxy.accounting.pricing import PriceTable
from proxy.batch.jobs import ENDPOINTS, RUN_SECONDS, TERMINAL, Job, PromptCounter, output_lines, read_input
from proxy.dialects.providers import upstream_path
from proxy.errors import BadRequest, LoopDetected
from proxy.exchange import Exchange
from proxy.stages.auth import Auth
from proxy.stages.budget import Budgets
from proxy.stages.tags import TAGS_HEADER, parse_tags
from proxy.stages.upstream import HOP_HEADER, UpstreamClient, iter_body, read_body, relayed_headers
from proxy.store import Settlement, Store, StoreUnavailable, Totals

log = logging.getLogger("thriftgate.batch")
POLL_SECONDS = 60.0
ACCOUNTING_LEASE_SECONDS = 600  # a replica that dies while accounting a batch leaves it to another after this
JOB_KEPT_SECONDS = RUN_SECONDS + 7 * 86400
ACCOUNTED_REMEMBERED = 10_000
UPLOAD_CHUNK = 1 << 16

Run = Callable[[Exchange], Awaitable[web.StreamResponse]]


class BatchApi:
    def __init__(self, *, auth: Auth, upstreams: UpstreamClient, budgets: Budgets | None, store: Store,
                 ledger: Ledger, metrics: Metrics, prices: PriceTable, count_prompt: PromptCounter,
                 default_output: int, poll_seconds: float | None = None) -> None:
        self._auth = auth
        self._upstreams = upstreams
        self._budgets = budgets
        self._store = store
        self._ledger = ledger
        self._metrics = metrics
        self._prices = prices
        self._count_prompt = count_prompt
        self._default_output = default_output
        self._poll_seconds = poll_seconds or POLL_SECONDS
        self._jobs: dict[str, Job] = {}  # the batches this replica created and polls until they end
        self._tasks: set[asyncio.Task] = set()
        self._poller: asyncio.Task | None = None
        self._full_price_logged: set[str] = set()
        self._accounted: dict[str, None] = {}  # recent batches known priced: a list call need not ask the store

    def add_routes(self, router: web.UrlDispatcher, handled: Callable[[str, Run], Callable]) -> None:
        """`handled(endpoint, run)`: the pipeline's wrapper (errors, settle, record)."""
        files, batches = handled("files", self._relay), handled("batches", self._relay_batches)
        router.add_post("/v1/files", handled("files", self._upload))
        router.add_get("/v1/files", files)
        router.add_get("/v1/files/{file_id}", files)
        router.add_delete("/v1/files/{file_id}", files)
        router.add_get("/v1/files/{file_id}/content", files)
        router.add_post("/v1/batches", handled("batches", self._create))
        router.add_get("/v1/batches", batches)
        router.add_get("/v1/batches/{batch_id}", batches)
        router.add_post("/v1/batches/{batch_id}/cancel", batches)

    async def running(self, app: web.Application) -> AsyncIterator[None]:
        """For app.cleanup_ctx, after the upstream client starts (and so before it closes)."""
        self._poller = asyncio.create_task(self._poll(), name="thriftgate-batch-poller")
        yield
        self._poller.cancel()
        await asyncio.gather(self._poller, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)  # rows and settlements still being written

    # ---- requests ----

    async def _upload(self, ex: Exchange) -> web.StreamResponse:
        await self._admit(ex)
        return await self._forward(ex, ex.request.content.iter_chunked(UPLOAD_CHUNK))

    async def _relay(self, ex: Exchange) -> web.StreamResponse:
        await self._admit(ex)
        return await self._forward(ex, await ex.request.read() or None)

    async def _relay_batches(self, ex: Exchange) -> web.StreamResponse:
        response = await self._relay(ex)
        if response.status < 300:
            self._watch(response.body)
        return response

    async def _create(self, ex: Exchange) -> web.StreamResponse:
        await self._admit(ex)
        ex.raw_body = await ex.request.read()
        try:
            body = orjson.loads(ex.raw_body)
        except orjson.JSONDecodeError:
            raise BadRequest("We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        file_id, endpoint = body.get("input_file_id"), body.get("endpoint")
        if not isinstance(file_id, str) or not file_id:
            raise BadRequest("Missing required parameter: 'input_file_id'.", param="input_file_id")
        if endpoint not in ENDPOINTS:
            raise BadRequest(f"'endpoint' must be one of {', '.join(ENDPOINTS)}.", param="endpoint")
        status, content = await self._read_upstream(ex.upstream, f"/files/{quote(file_id, safe='')}/content",
                                                    ex.client_headers())
        if status >= 400:  # no such file, or no access: the provider's own answer
            ex.status, ex.error_code = status, f"upstream_{status}"
            return web.Response(status=status, body=content, content_type="application/json")
        summary = await asyncio.to_thread(read_input, content, endpoint, self._count_prompt, self._default_output)
        ceiling = self._prices.estimate_nanos(summary.model, summary.prompt_tokens, summary.output_tokens,
                                              batch=True) or 0
        ex.requested_model = summary.model
        plan = None
        if self._budgets is not None:
            ex.model = summary.model  # what model-scoped budgets match on, for the reservation only
            try:
                plan = await self._budgets.reserve_batch(ex, ceiling)
            finally:
                ex.model = ""  # the creation itself answers nothing: no usage, no model to settle
        response = await self._forward(ex, ex.raw_body)  # a failure leaves ex.reservation: settled to nothing
        if response.status >= 300:
            return response
        batch = orjson.loads(response.body)
        if plan is not None:
            await self._budgets.commit_batch(ex, plan)  # the ceiling is the job's, until its lines are priced
        job = Job(batch_id=batch["id"], endpoint=ENDPOINTS[endpoint].endpoint, model=summary.model,
                  upstream=ex.upstream.name, key_id=ex.key_id, team=ex.team, user=ex.user,
                  tags=",".join(sorted(ex.tags)),
                  language=ex.language, created_at=time.time(), reserved_nanos=ceiling,
                  hold_id=plan.hold_id if plan else ex.request_id,
                  counters=tuple((charge.counter, charge.ttl) for charge in plan.charges) if plan else ())
        self._jobs[job.batch_id] = job
        try:
            await self._store.put_note(f"batch:{job.batch_id}", job.encode(), JOB_KEPT_SECONDS)
        except StoreUnavailable:
            log.error("batch %s: the store is unreachable; only this replica knows the job", job.batch_id)
        log.info("batch %s created: %d %s lines of %s, $%.6f held at batch prices", job.batch_id, summary.lines,
                 job.endpoint, job.model, ceiling / 1e9)
        return response

    async def _admit(self, ex: Exchange) -> None:
        if HOP_HEADER in ex.request.headers:
            raise LoopDetected("This request already passed through thriftgate: an upstream points back at the proxy.")
        await self._auth.authenticate(ex)
        ex.cost_nanos = 0  # managing files and batches is free; the lines are priced when the batch ends
        ex.upstream = self._upstreams.default_for("openai")
        ex.tags = parse_tags(ex.request.headers.get(TAGS_HEADER)) | ex.tags  # and the key's, from authenticate
        ex.language = language_of(ex.request.headers.get(LANGUAGE_HEADER))

    async def _forward(self, ex: Exchange, body) -> web.Response:
        ex.upstream_started = time.perf_counter()
        async with self._upstreams.open(ex.upstream, ex.request.method, upstream_path(ex), body,
                                        ex.client_headers()) as resp:
            answer = await read_body(ex.upstream, resp)
            ex.upstream_seconds = time.perf_counter() - ex.upstream_started
            ex.status = resp.status
            if resp.status >= 400:
                ex.error_code = f"upstream_{resp.status}"
            headers = relayed_headers(resp.headers)
            headers["x-thriftgate-request-id"] = ex.request_id
            return web.Response(status=resp.status, body=answer, headers=headers)

    async def _read_upstream(self, upstream, path: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        async with self._upstreams.open(upstream, "GET", path, None, headers) as resp:
            return resp.status, b"".join([chunk async for chunk in iter_body(upstream, resp)])

    # ---- ended batches ----

    def _watch(self, body: bytes) -> None:
        """A batch (or a list of them) just relayed: those that have ended are accounted, off the request's path."""
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        batches = answer.get("data") if answer.get("object") == "list" else [answer]
        for batch in batches or ():
            if isinstance(batch, dict) and batch.get("status") in TERMINAL and isinstance(batch.get("id"), str) \
                    and batch["id"] not in self._accounted:
                task = asyncio.ensure_future(self._account(batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _poll(self) -> None:
        """The batches this replica created, every poll_seconds, so that one nobody asks about is still priced."""
        while True:
            await asyncio.sleep(self._poll_seconds)
            for batch_id in list(self._jobs):
                job = self._jobs[batch_id]
                upstream = self._upstreams.named(job.upstream) or self._upstreams.default_for("openai")
                try:
                    status, body = await self._read_upstream(upstream, f"/batches/{quote(batch_id, safe='')}", {})
                except Exception:  # the upstream is down: the next round tries again
                    log.warning("could not poll batch %s", batch_id, exc_info=True)
                    continue
                if status < 300:
                    self._watch(body)

    async def _account(self, batch: dict) -> None:
        batch_id = batch["id"]
        try:
            job = await self._job(batch_id)
            if job is None or job.accounted:
                self._remember_accounted(batch_id)
                return
            if not await self._lease(batch_id, job):
                return
            upstream = self._upstreams.named(job.upstream) or self._upstreams.default_for("openai")
            lines = []
            for file_id in (batch.get("output_file_id"), batch.get("error_file_id")):
                if file_id:
                    status, content = await self._read_upstream(upstream, f"/files/{quote(file_id, safe='')}/content",
                                                                {})
                    if status >= 400:
                        log.error("batch %s: its file %s could not be read (HTTP %d); retried after the lease",
                                  batch_id, file_id, status)
                        return
                    lines += await asyncio.to_thread(lambda: list(output_lines(job, batch, content, self._prices)))
            total = self._record(job, lines)
            await self._settle(job, lines, total)
            self._jobs.pop(batch_id, None)
            self._remember_accounted(batch_id)
            await self._store.put_note(f"batch:{batch_id}", replace(job, accounted=True).encode(), JOB_KEPT_SECONDS)
            log.info("batch %s %s: %d lines recorded, $%.6f at batch prices ($%.6f was held)", batch_id,
                     batch.get("status"), len(lines), total / 1e9, job.reserved_nanos / 1e9)
        except Exception:
            log.exception("batch %s could not be accounted; it will be tried again", batch_id)

    def _remember_accounted(self, batch_id: str) -> None:
        if len(self._accounted) >= ACCOUNTED_REMEMBERED:
            del self._accounted[next(iter(self._accounted))]  # the oldest
        self._accounted[batch_id] = None

    async def _job(self, batch_id: str) -> Job | None:
        try:
            note = await self._store.get_note(f"batch:{batch_id}")
        except StoreUnavailable:
            return self._jobs.get(batch_id)
        return Job.decode(note) if note else self._jobs.get(batch_id)

    async def _lease(self, batch_id: str, job: Job) -> bool:
        try:
            return await self._store.mark_once(f"batch-accounting:{batch_id}", ACCOUNTING_LEASE_SECONDS)
        except StoreUnavailable:
            return batch_id in self._jobs  # the replica that made it accounts it meanwhile

    def _record(self, job: Job, lines: list) -> int:
        total = 0
        for line in lines:
            record = line.record
            self._ledger.add(record)
            self._metrics.batch_line(record.model, record.team, record.status, line.usage, record.cost_nanos)
            total += record.cost_nanos or 0
            if line.full_price and job.model not in self._full_price_logged:
                self._full_price_logged.add(job.model)
                log.warning("model %r has no batch price: its batch lines are priced at the full rate", job.model)
        return total

    async def _settle(self, job: Job, lines: list, total: int) -> None:
        """The budgets get back what the ceiling spent beyond the job's real cost (or pay what it passed);
        with a shared store, its lines join the fleet's totals."""
        totals = None
        if self._store.shared and lines:
            usages = [line.usage for line in lines]
            totals = Totals(day=time.strftime("%Y-%m-%d", time.gmtime(lines[0].record.ts)), model=job.model,
                            team=job.team, key=job.key_id, prompt_tokens=sum(u.prompt_tokens for u in usages),
                            completion_tokens=sum(u.completion_tokens for u in usages),
                            cached_prompt_tokens=sum(u.cached_prompt_tokens for u in usages),
                            reasoning_tokens=sum(u.reasoning_tokens for u in usages), cost_nanos=total)
        if job.counters or totals is not None:
            counters = tuple((counter, total - job.reserved_nanos, ttl) for counter, ttl in job.counters)
            await self._store.settle(Settlement(f"{job.hold_id}/priced", time.time(), counters, totals))
