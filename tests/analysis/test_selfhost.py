"""The self-hosting model against its published worked example, and on a recorded workload.

The example: Aman Sanger, "Why GPT-3.5 is (mostly) cheaper than Llama 2", Cursor, 2023-07-20
(https://cursor.com/blog/llama-inference). Llama-2-70B in 16-bit on 2 x A100-80GB at $4.42 an hour for the
pair, ~200 of 312 TFLOPS (MFU ~0.64), ~1.3 of 2 TB/s per GPU (0.65), against gpt-3.5-turbo at its July 2023
prices ($0.0015 / 1K prompt, $0.002 / 1K completion tokens). Its figures, per 1K tokens: prompt $0.00042;
completion $0.066 at batch 1, $0.00825 at batch 8 (4,096-token sequences; "max batch size ... around 8"),
$0.00206 at batch 32 (1K-token sequences).
"""

import json
import math

import pytest

from proxy.accounting.ledger import SpendRecord
from proxy.accounting.pricing import PriceTable, default_pricing_path
from proxy.analysis import selfhost
from proxy.analysis.hardware import GPUS, OPEN_MODELS
from proxy.cli import main
from tests.analysis.ledgers import write_ledger

LLAMA = OPEN_MODELS["llama-2-70b"]
PAIR = selfhost.Deployment(LLAMA.name, LLAMA.parameters, LLAMA.kv_bytes_per_token, GPUS["A100-80GB"], 2, 4.42 / 2)
GPT35_JULY_2023 = {"prompt": 1.5, "output": 2.0}  # USD per 1M tokens, as the example compares


def within_10_percent(value: float, published: float) -> bool:
    return abs(value - published) <= 0.10 * published


def test_the_worked_example_prompt_tokens_are_over_3x_cheaper_self_hosted() -> None:
    sizing = selfhost.size(PAIR, context_tokens=4096, prompt_tokens=1536, batch=8)
    assert within_10_percent(sizing.prompt_usd_per_million, 0.42), sizing.prompt_usd_per_million
    assert GPT35_JULY_2023["prompt"] / sizing.prompt_usd_per_million > 3


@pytest.mark.parametrize(("batch", "context", "published"), [(1, 4096, 66.0), (8, 4096, 8.25), (32, 1024, 2.06)])
def test_the_worked_example_output_tokens_cost_more_self_hosted(batch: int, context: int, published: float) -> None:
    sizing = selfhost.size(PAIR, context_tokens=context, prompt_tokens=512, batch=batch)
    assert within_10_percent(sizing.output_usd_per_million, published), sizing.output_usd_per_million
    assert sizing.output_usd_per_million > GPT35_JULY_2023["output"]


def test_the_largest_batch_is_what_fits_beside_the_weights() -> None:
    assert selfhost.max_batch(PAIR, 4096) == 8  # the example: "our max batch size ... is around 8"
    sizing = selfhost.size(PAIR, context_tokens=4096, prompt_tokens=512)
    assert sizing.batch == 8
    with pytest.raises(selfhost.SelfHostError, match=r"batch 9 does not fit: .* at most 8 fit"):
        selfhost.size(PAIR, context_tokens=4096, prompt_tokens=512, batch=9)


def test_break_even_prompt_to_output_ratio_of_the_example() -> None:
    sizing = selfhost.size(PAIR, context_tokens=4096, prompt_tokens=1536, batch=8)
    verdict = selfhost.break_even(GPT35_JULY_2023["prompt"], GPT35_JULY_2023["output"],
                                  sizing.prompt_usd_per_million, sizing.output_usd_per_million)
    ratio = (sizing.output_usd_per_million - 2.0) / (1.5 - sizing.prompt_usd_per_million)
    assert verdict == {"self_hosting_cheaper": "above", "ratio": pytest.approx(ratio)}
    assert 5 < ratio < 7  # classification-like work (many prompt tokens per output token) wins self-hosted


@pytest.mark.parametrize(("api", "own", "expected"), [
    ((1.0, 2.0), (0.5, 1.0), ("always", None)),
    ((1.0, 2.0), (1.5, 3.0), ("never", None)),
    ((1.0, 2.0), (2.0, 1.0), ("below", 1.0)),  # prompt dearer, output cheaper: wins on output-heavy work
])
def test_break_even_cases(api, own, expected) -> None:
    verdict = selfhost.break_even(*api, *own)
    assert (verdict["self_hosting_cheaper"], verdict["ratio"]) == expected


def test_a_model_that_does_not_fit_says_so_with_the_numbers() -> None:
    one = selfhost.Deployment(LLAMA.name, LLAMA.parameters, LLAMA.kv_bytes_per_token, GPUS["A100-80GB"], 1, 2.0)
    with pytest.raises(selfhost.SelfHostError) as failure:
        selfhost.size(one, context_tokens=2048, prompt_tokens=512)
    message = str(failure.value)
    for figure in ("llama-2-70b does not fit", "140.0 GB", "7e+10 parameters x 2 bytes", "0.67 GB of KV cache",
                   "1 x A100-80GB have 80 GB", "76.0 GB of it usable"):
        assert figure in message, message


def test_a_latency_target_sets_the_batch() -> None:
    sizing = selfhost.size(PAIR, context_tokens=1024, prompt_tokens=512, target_tokens_per_second=17.8)
    assert sizing.sequence_tokens_per_second >= 17.8 and 1 < sizing.batch < sizing.max_batch
    bigger = selfhost.size(PAIR, context_tokens=1024, prompt_tokens=512, batch=sizing.batch + 1)
    assert bigger.sequence_tokens_per_second < 17.8  # the largest batch that keeps the target
    relaxed = selfhost.size(PAIR, context_tokens=1024, prompt_tokens=512, target_tokens_per_second=1)
    assert relaxed.batch == relaxed.max_batch  # memory, not speed, is then the limit
    with pytest.raises(selfhost.SelfHostError, match=r"cannot give a sequence of llama-2-70b 40 tokens a second: "
                                                     r"at batch 1 it gets 18\.\d"):
        selfhost.size(PAIR, context_tokens=1024, prompt_tokens=512, target_tokens_per_second=40)


def test_short_prompts_are_bound_by_reading_the_weights() -> None:
    long = selfhost.size(PAIR, context_tokens=1024, prompt_tokens=2000, batch=1)
    short = selfhost.size(PAIR, context_tokens=1024, prompt_tokens=20, batch=1)
    assert short.prompt_usd_per_million > long.prompt_usd_per_million  # 20 tokens cannot use the FLOPS
    assert short.prompt_tokens_per_second == pytest.approx(20 / (PAIR.weights_bytes / PAIR.bandwidth))


def _row(n: int, model: str, team: str, prompt: int, output: int, cost: int | None, endpoint: str = "chat") -> SpendRecord:
    return SpendRecord(
        request_id=f"r{n}", ts=1_700_000_000.0 + n, endpoint=endpoint, requested_model=model, model=model,
        upstream="openai", key_id=None, team=team, user=None, prompt_tokens=prompt, completion_tokens=output,
        cached_prompt_tokens=0, cache_write_tokens=0, reasoning_tokens=0, cost_nanos=cost, usage_source="upstream",
        status=200, stream=False, latency_ms=1.0, client_disconnected=False, error=None)


def test_the_recorded_traffic_against_its_self_hosted_cost() -> None:
    prices = PriceTable.load([default_pricing_path()], {})
    sizing = selfhost.size(PAIR, context_tokens=1024, prompt_tokens=1000, batch=32)
    rows = [_row(1, "gpt-4o-mini", "search", 9000, 100, 1_410_000),  # a classifier: prompt-heavy
            _row(2, "gpt-4o-mini", "writers", 200, 2000, 1_230_000),
            _row(3, "text-embedding-3-small", "search", 5000, 0, 100_000, endpoint="embeddings"),  # not an LLM's work
            _row(4, "llama-3.1-70b", "writers", 50_000, 50_000, None),  # no API price to compare: left out, counted
            _row(5, "llama-3.1-70b", "local", 700, 300, None)]
    report = selfhost.compare([_as_dict(r) for r in rows], sizing, PAIR, prices, by="team", window_seconds=3600)
    by_team = {group["group"]: group for group in report["groups"]}
    assert set(by_team) == {"search", "writers", "local"}
    writers, local = by_team["writers"], by_team["local"]
    assert (writers["requests"], writers["prompt_tokens"], writers["unpriced_requests"]) == (1, 200, 1)
    assert (local["requests"], local["unpriced_requests"], local["self_hosted_usd"], local["break_even"]) == (0, 1, 0, None)
    assert (report["total"]["requests"], report["total"]["unpriced_requests"]) == (2, 2)
    search = by_team["search"]
    assert (search["requests"], search["prompt_tokens"], search["output_tokens"]) == (1, 9000, 100)
    assert search["api_usd"] == pytest.approx(0.00141)
    own = (9000 * sizing.prompt_usd_per_million + 100 * sizing.output_usd_per_million) / 1e6
    assert search["self_hosted_usd"] == pytest.approx(own)
    assert report["total"]["api_usd"] == pytest.approx(0.00264)
    busy = 9200 / sizing.prompt_tokens_per_second + 2100 / sizing.output_tokens_per_second
    assert report["rented"] == pytest.approx({"window_hours": 1.0, "busy_hours": busy / 3600, "replicas": 1,
                                              "utilisation": busy / 3600, "usd": 4.42})


def _as_dict(record: SpendRecord) -> dict:
    return {name: getattr(record, name) for name in SpendRecord.__dataclass_fields__}


async def test_the_command_compares_the_recorded_traffic(tmp_path, capsys) -> None:
    ledger = tmp_path / "ledger.db"
    await write_ledger(ledger, [_row(1, "gpt-4o-mini", "search", 9000, 100, 1_410_000)], ts_now=True)
    args = ["selfhost", "--ledger", str(ledger), "--model", "llama-2-70b", "--gpu", "A100-80GB", "--gpus", "2",
            "--gpu-hour-usd", "2.21", "--batch", "8", "--context-tokens", "4096", "--vs", "gpt-4o-mini", "--by", "team"]
    assert main(args + ["--explain"]) == 0
    out = capsys.readouterr().out
    assert "$0.4304 per 1M prompt tokens" in out and "search" in out and "formulas:" in out
    assert "decoding step t = max((W + B x N x k) / M, 2P x B / F)" in out
    assert main(args + ["--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sizing"]["batch"] == 8 and report["groups"][0]["group"] == "search"
    assert report["versus"]["break_even"]["self_hosting_cheaper"] == "never"  # gpt-4o-mini is cheap
    assert math.isclose(report["groups"][0]["api_usd"], 0.00141)


def test_the_command_refuses_a_model_that_does_not_fit(tmp_path, capsys) -> None:
    code = main(["selfhost", "--ledger", str(tmp_path / "none.db"), "--model", "llama-2-70b", "--gpu", "L4",
                 "--gpu-hour-usd", "0.8"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "llama-2-70b does not fit" in captured.err and "1 x L4 have 24 GB" in captured.err
