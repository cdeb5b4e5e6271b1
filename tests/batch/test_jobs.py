"""A batch's result files turned into priced ledger rows, without a proxy: the odd cases."""

import orjson

from proxy.accounting.pricing import PriceTable, default_pricing_path
from proxy.batch.jobs import Job, output_lines

PRICES = PriceTable.load([default_pricing_path()], {})


def job(model: str) -> Job:
    return Job(batch_id="batch_1", endpoint="chat", model=model, upstream="openai", key_id="k", team="t", user=None,
               tags="eval", language=None, created_at=1000.0, reserved_nanos=0, hold_id="tg-1", counters=())


def answer(custom_id: str, prompt: int, completion: int) -> bytes:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    body = {"object": "chat.completion", "choices": [], "usage": usage}
    return orjson.dumps({"id": "r", "custom_id": custom_id, "response": {"status_code": 200, "body": body},
                         "error": None})


def test_lines_at_the_batch_rate_and_at_the_full_rate_without_one() -> None:
    content = b"\n".join([answer("a", 1000, 100), b"", b"not json", b'"a string"', answer("b", 10, 1)])
    lines = list(output_lines(job("gpt-4o"), {"completed_at": 5000}, content, PRICES))
    assert [line.record.request_id for line in lines] == ["batch_1/a", "batch_1/b"]  # odd lines left out
    assert lines[0].record.cost_nanos == 1000 * 1250 + 100 * 5000 and not lines[0].full_price
    assert (lines[0].record.ts, lines[0].record.latency_ms, lines[0].record.tags) == (5000.0, 4_000_000.0, '["batch","eval"]')
    [mistral] = output_lines(job("mistral-large-latest"), {}, answer("c", 1000, 100), PRICES)
    assert mistral.full_price and mistral.record.cost_nanos == PRICES.cost_nanos("mistral-large-latest", mistral.usage)


def test_failed_lines_cost_nothing_and_keep_their_error() -> None:
    failed = orjson.dumps({"id": "r", "custom_id": "x", "response": {"status_code": 400, "body": {
        "error": {"message": "bad", "type": "invalid_request_error", "code": "invalid_value"}}}, "error": None})
    expired = orjson.dumps({"id": "r", "custom_id": "y", "response": None,
                            "error": {"code": "batch_expired", "message": "not run in time"}})
    rows = [line.record for line in output_lines(job("gpt-4o"), {}, failed + b"\n" + expired, PRICES)]
    assert [(r.status, r.error, r.cost_nanos) for r in rows] == [(400, "invalid_value", 0), (0, "batch_expired", 0)]
