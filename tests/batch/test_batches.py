"""The Batch API through thriftgate, with the openai SDK, against the fake's files and batches: keys and budgets
at submission, every output line priced at the batch rate and recorded, the hold settled to the real cost."""

import asyncio
from decimal import Decimal

import aiohttp
import openai
import orjson
import pytest
from yarl import URL

from proxy.accounting.ledger import open_readonly
from proxy.accounting.money import format_usd
from proxy.appkeys import METRICS
from proxy.batch import endpoints
from tests.conftest import RunningProxy, StartProxy
from tests.shared import REDIS_URL, todays_global_usd

QUESTIONS = ("Name three rivers.", "Name two mountains.", "Name one sea.")
MAX_TOKENS = 30
# gpt-4o-mini's batch prices (batch_input 0.075, batch_output 0.3 USD per 1M): nano-dollars a token.
BATCH_INPUT, BATCH_OUTPUT = Decimal("75"), Decimal("300")


def input_file(model: str = "gpt-4o-mini", questions=QUESTIONS) -> bytes:
    return b"".join(orjson.dumps({
        "custom_id": f"q{n}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": model, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": question}]},
    }) + b"\n" for n, question in enumerate(questions))


def sdk(proxy: RunningProxy, **headers: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-client", max_retries=0,
                              default_headers=headers or None)


async def submit(client: openai.AsyncOpenAI, lines: bytes | None = None) -> object:
    """Upload an input file (three questions unless `lines` are given) and start a chat batch on it."""
    uploaded = await client.files.create(file=("q.jsonl", input_file() if lines is None else lines), purpose="batch")
    return await client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                       completion_window="24h")


async def run_to_the_end(client: openai.AsyncOpenAI, batch_id: str) -> object:
    for _ in range(10):
        batch = await client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
    raise AssertionError(f"batch {batch_id} did not end")


async def lines_recorded(proxy: RunningProxy, batch_id: str, count: int) -> list[dict]:
    for _ in range(750):  # 15 s at most, on a busy machine
        rows = [row for row in await proxy.ledger.recent(100) if row["batch_id"] == batch_id]
        if len(rows) == count:
            return rows
        await asyncio.sleep(0.02)  # the lines are recorded off the retrieve's path
    raise AssertionError(f"{count} lines of {batch_id} were not recorded")


async def test_a_batch_end_to_end(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(budgets=[{"scope": "global", "usd": "1", "window": "day"}])
    async with sdk(proxy, **{"x-thriftgate-tags": "nightly"}) as client:
        uploaded = await client.files.create(file=("questions.jsonl", input_file()), purpose="batch")
        assert uploaded.purpose == "batch" and uploaded.bytes == len(input_file())
        assert (await client.files.retrieve(uploaded.id)).filename == "questions.jsonl"
        assert (await client.files.content(uploaded.id)).content == input_file()
        raw = await client.batches.with_raw_response.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
        batch = raw.parse()
        assert batch.status == "validating"
        creation = await proxy.ledger.get(raw.headers["x-thriftgate-request-id"])
        assert (creation["endpoint"], creation["cost_nanos"], creation["requested_model"]) == ("batches", 0,
                                                                                                "gpt-4o-mini")
        finished = await run_to_the_end(client, batch.id)
        assert finished.status == "completed" and finished.request_counts.completed == 3
        output = (await client.files.content(finished.output_file_id)).content
    rows = await lines_recorded(proxy, batch.id, 3)
    answers = {line["custom_id"]: line["response"]["body"]["usage"] for line in map(orjson.loads, output.splitlines())}
    for row in rows:
        usage = answers[row["request_id"].split("/", 1)[1]]
        by_hand = usage["prompt_tokens"] * BATCH_INPUT + usage["completion_tokens"] * BATCH_OUTPUT
        assert row["cost_nanos"] == by_hand  # half of what the same tokens cost answered at once
        assert (row["tags"], row["model"], row["endpoint"], row["status"]) == ('["batch","nightly"]', "gpt-4o-mini", "chat", 200)
        assert (row["prompt_tokens"], row["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    total = sum(row["cost_nanos"] for row in rows)
    # The ceiling was settled to the job's real cost: what is left is the budget minus the lines (and the next request).
    async with sdk(proxy) as client:
        reply = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    chat_cost = int(Decimal(reply.headers["x-thriftgate-cost-usd"]) * 10**9)
    assert reply.headers["x-thriftgate-budget-remaining-usd"] == format_usd(10**9 - total - chat_cost)
    metrics = proxy.app[METRICS]
    spent = metrics.registry.get_sample_value("thriftgate_batch_spend_usd_total", {"model": "gpt-4o-mini", "team": "none"})
    assert spent == pytest.approx(total / 1e9, abs=1e-15)
    assert 'thriftgate_batch_lines_total{model="gpt-4o-mini",status="200"} 3.0' in metrics.render().decode()


async def test_a_batch_that_does_not_fit_its_budget_is_refused_before_the_provider_sees_it(
    start_proxy: StartProxy, fake
) -> None:
    proxy = await start_proxy(budgets=[{"scope": "global", "usd": "0.00001", "window": "day"}])
    async with sdk(proxy) as client:
        uploaded = await client.files.create(file=("q.jsonl", input_file()), purpose="batch")
        with pytest.raises(openai.RateLimitError) as refused:
            await client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
    assert refused.value.code == "budget_exceeded"
    assert not any(request.path == "/v1/batches" for request in fake.requests)


async def test_the_hold_covers_the_lines_until_they_are_priced(start_proxy: StartProxy, fake) -> None:
    # The three lines' ceiling at batch prices: their prompts and 3 x MAX_TOKENS of output.
    proxy = await start_proxy(budgets=[{"scope": "global", "usd": "0.0001", "window": "day"}])
    async with sdk(proxy) as client:
        batch = await submit(client)
        reply = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
        held_and_spent = 100_000 - int(Decimal(reply.headers["x-thriftgate-budget-remaining-usd"]) * 10**9)
        chat_cost = int(Decimal(reply.headers["x-thriftgate-cost-usd"]) * 10**9)
        assert held_and_spent - chat_cost >= 3 * MAX_TOKENS * BATCH_OUTPUT  # the batch's hold
        await run_to_the_end(client, batch.id)
    await lines_recorded(proxy, batch.id, 3)


async def test_failed_lines_are_recorded_from_the_error_file(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy()
    async with sdk(proxy) as client:
        batch = await submit(client, input_file(model="gpt-unknown"))
        finished = await run_to_the_end(client, batch.id)
        assert finished.output_file_id is None and finished.error_file_id
    rows = await lines_recorded(proxy, batch.id, 3)
    assert {(row["status"], row["error"], row["cost_nanos"]) for row in rows} == {(404, "model_not_found", 0)}


@pytest.mark.parametrize(("lines", "message"), [
    (b"not json\n", "input file line 1 is not JSON"),
    (orjson.dumps({"custom_id": "a", "url": "/v1/embeddings", "body": {"model": "gpt-4o-mini"}}) + b"\n",
     "input file line 1: its url '/v1/embeddings' is not the batch's endpoint /v1/chat/completions"),
    (input_file() + input_file(model="gpt-4o"), "input file line 4 asks for 'gpt-4o', an earlier line for 'gpt-4o-mini'"),
    (b"\n", "The input file holds no requests"),
])
async def test_a_bad_input_file_is_a_400_naming_the_line(proxy: RunningProxy, fake, lines: bytes,
                                                         message: str) -> None:
    async with sdk(proxy) as client:
        uploaded = await client.files.create(file=("q.jsonl", lines), purpose="batch")
        with pytest.raises(openai.BadRequestError) as refused:
            await client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
    assert message in refused.value.message and refused.value.param == "input_file_id"


async def test_files_and_batches_need_a_key_when_keys_are_required(start_proxy: StartProxy, fake) -> None:
    proxy = await start_proxy(auth={"required": True})
    async with sdk(proxy) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.files.create(file=("q.jsonl", input_file()), purpose="batch")
        with pytest.raises(openai.AuthenticationError):
            await client.batches.list()
    assert not any(request.path.startswith(("/v1/files", "/v1/batches")) for request in fake.requests)


async def test_unknown_ids_get_the_providers_404(proxy: RunningProxy, fake) -> None:
    async with sdk(proxy) as client:
        with pytest.raises(openai.NotFoundError):
            await client.batches.retrieve("batch_nope")
        with pytest.raises(openai.NotFoundError):
            await client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions",
                                        completion_window="24h")
        with pytest.raises(openai.BadRequestError) as refused:
            await client.batches.create(input_file_id="file-x", endpoint="/v1/moderations", completion_window="24h")
    assert refused.value.param == "endpoint"


async def test_cancel_and_list_pass_through(proxy: RunningProxy, fake) -> None:
    async with sdk(proxy) as client:
        batch = await submit(client)
        assert (await client.batches.cancel(batch.id)).status == "cancelling"
        assert (await run_to_the_end(client, batch.id)).status == "cancelled"
        assert [b.id async for b in client.batches.list()] == [batch.id]
        assert (await client.files.delete(batch.input_file_id)).deleted


async def test_a_batch_nobody_asks_about_is_polled_and_priced(
    start_proxy: StartProxy, fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoints, "POLL_SECONDS", 0.05)
    proxy = await start_proxy()
    async with sdk(proxy) as client:
        batch = await submit(client)
    rows = await lines_recorded(proxy, batch.id, 3)  # the replica's poller retrieved it to its end
    assert all(row["cost_nanos"] > 0 for row in rows)


async def test_two_replicas_price_a_batch_once(start_proxy: StartProxy, fake, tmp_path, redis_prefix: str) -> None:
    store = {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": redis_prefix}
    budget = [{"scope": "global", "usd": "1", "window": "day"}]
    replicas = [await start_proxy(store=store, budgets=budget, ledger={"path": str(tmp_path / f"ledger-{i}.db")})
                for i in range(2)]
    async with sdk(replicas[0]) as first, sdk(replicas[1]) as second:
        batch = await submit(first)
        for _ in range(4):  # both see it end, each retrieve moving it on
            await second.batches.retrieve(batch.id)
            await first.batches.retrieve(batch.id)
    rows = []
    for _ in range(750):  # whichever replica takes the lease prices it, off the retrieve's path
        rows = [row for replica in replicas for row in await replica.ledger.recent(100) if row["batch_id"] == batch.id]
        if len(rows) == 3:
            break
        await asyncio.sleep(0.02)
    total = sum(row["cost_nanos"] for row in rows)
    async with sdk(replicas[1]) as client:
        reply = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    chat_cost = int(Decimal(reply.headers["x-thriftgate-cost-usd"]) * 10**9)
    for replica in replicas:
        await replica.runner.cleanup()  # waits for any accounting still running: a second one would show now
    # The budget as Redis keeps it for the fleet: the lines and the chat, whichever replica priced the job, and
    # nothing held for it any more (a stopped replica keeps a lease only for what it still holds).
    counter = await todays_global_usd(REDIS_URL, redis_prefix)
    assert (int(counter["used"]), int(counter["leased"])) == (total + chat_cost, 0)
    recorded = []
    for index in range(2):
        with open_readonly(tmp_path / f"ledger-{index}.db") as ledger:
            recorded += [row["request_id"] for row in ledger.recent(100) if row["batch_id"] == batch.id]
    assert sorted(recorded) == [f"{batch.id}/q{n}" for n in range(3)]  # each line once, fleet-wide


@pytest.mark.parametrize("raw_path", ["/v1/files/.%2e/content", "/v1/files/%2E%2E/content", "/v1/batches/%2e%2e",
                                      "/v1/files/..%2Fmodels", "/v1/batches/x/%2e%2e/cancel"])
async def test_a_path_that_leaves_the_files_and_batches_apis_never_reaches_the_upstream(
    proxy: RunningProxy, fake, raw_path: str
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.request("POST" if raw_path.endswith("cancel") else "GET",
                                   URL(proxy.url + raw_path, encoded=True)) as response:
            assert response.status in (400, 404), raw_path
            assert "error" in await response.json()
    assert fake.requests == []


async def test_an_encoded_spelling_of_the_files_api_is_the_files_api(proxy: RunningProxy, fake) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(URL(proxy.url + "/v1/%66iles", encoded=True)) as response:
            assert response.status == 200 and (await response.json())["object"] == "list"
    [request] = fake.requests
    assert (request.path, request.headers["Authorization"]) == ("/v1/files", f"Bearer {fake.api_key}")
