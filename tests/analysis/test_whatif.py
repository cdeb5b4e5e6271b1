"""`thriftgate whatif` on a ledger of known requests: every figure checked against arithmetic done by hand.

Rates of the shipped table, in nano-dollars per token (USD per 1M tokens x 1000):
gpt-4o 2500 input, 1250 cached input, 10000 output; gpt-4o-mini 150, 75, 600 (batch: 75, 37.5, 300);
claude-haiku-4-5 1000 input, 100 cache read, 1250 cache write, 5000 output.
"""

import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from proxy.accounting.ledger import SpendRecord
from proxy.accounting.pricing import PriceTable, default_pricing_path
from proxy.analysis.whatif import Scenario, WhatIfError, whatif
from proxy.cli import main
from proxy.config_loading import validate
from proxy.stages.tags import tags_column
from tests.analysis.ledgers import read_rows, write_ledger

NOW = 1_700_000_000.0
PRICES = PriceTable.load([default_pricing_path()], {})


def request(n: int, model: str, prompt: int, output: int, *, cached: int = 0, written: int = 0, reasoning: int = 0,
            team: str = "a", tags: str = "", **changes) -> SpendRecord:
    record = SpendRecord(
        request_id=f"r{n}", ts=NOW + n, endpoint="chat", requested_model=model, model=model, upstream="openai",
        key_id="k1", team=team, user=None, prompt_tokens=prompt, completion_tokens=output,
        cached_prompt_tokens=cached, cache_write_tokens=written, reasoning_tokens=reasoning, cost_nanos=None,
        usage_source="upstream", status=200, stream=False, latency_ms=5.0, client_disconnected=False, error=None,
        tags=tags_column(frozenset(filter(None, tags.split(",")))), max_output_tokens=None, has_tools=False, has_images=False, has_response_format=False)
    return replace(record, **changes)


# (record, what it cost, by hand)
KNOWN = [
    (request(1, "gpt-4o", 1000, 500, cached=200, tags="summary"), 800 * 2500 + 200 * 1250 + 500 * 10000),
    (request(2, "gpt-4o", 300, 100, team="b"), 300 * 2500 + 100 * 10000),
    (request(3, "gpt-4o-mini", 2000, 50), 2000 * 150 + 50 * 600),
    (request(4, "claude-haiku-4-5", 1000, 200, cached=100, written=400, tags="summary,eu"),
     500 * 1000 + 100 * 100 + 400 * 1250 + 200 * 5000),
    (request(5, "llama-local", 100, 100), None),  # no price
    (request(6, "gpt-4o", 0, 0, status=429, error="budget_exceeded"), 0),
]
ACTUAL = 7_250_000 + 1_750_000 + 330_000 + 2_010_000


@pytest.fixture
async def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    await write_ledger(path, [replace(record, cost_nanos=cost) for record, cost in KNOWN])
    return path


def _usage(record: SpendRecord):
    from proxy.accounting.usage import Usage

    return Usage(record.prompt_tokens, record.completion_tokens, record.cached_prompt_tokens,
                 record.cache_write_tokens, record.reasoning_tokens)


def run(path: Path, scenario: Scenario, by: str = "model") -> dict:
    return whatif(lambda: read_rows(path, NOW, NOW + 100), scenario, PRICES, by=by, since=NOW, until=NOW + 100)


def test_the_known_ledger_costs_what_was_computed_by_hand() -> None:
    for record, cost in KNOWN:
        if cost:
            assert PRICES.cost_nanos(record.model, _usage(record)) == cost, record.model


async def test_a_model_map_reprices_to_the_nano_dollar(ledger: Path) -> None:
    report = run(ledger, Scenario({"gpt-4o": "gpt-4o-mini"}))
    mini = {1: 800 * 150 + 200 * 75 + 500 * 600, 2: 300 * 150 + 100 * 600}  # 435,000 and 105,000
    total = report["total"]
    assert (total["actual_nanos"], total["whatif_nanos"]) == (ACTUAL, mini[1] + mini[2] + 330_000 + 2_010_000)
    assert (total["requests"], total["affected_requests"], total["unpriced_requests"]) == (6, 3, 1)
    by_model = {group["group"]: group for group in report["groups"]}
    assert by_model["gpt-4o"]["actual_nanos"] == 9_000_000 and by_model["gpt-4o"]["whatif_nanos"] == 540_000
    assert by_model["gpt-4o"]["affected_share"] == 1.0 and by_model["gpt-4o-mini"]["affected_requests"] == 0
    assert by_model["gpt-4o"]["affected_cost_share"] == 1.0
    assert total["affected_cost_share"] == pytest.approx(9_000_000 / ACTUAL)
    assert by_model["gpt-4o"]["bases"] == {"exact: the same tokens at gpt-4o-mini's price": 3}


async def test_a_model_map_also_maps_dated_snapshots_and_provider_prefixes(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    await write_ledger(path, [replace(request(1, "openai/gpt-4o-2024-08-06", 1000, 0), cost_nanos=2_500_000)])
    assert run(path, Scenario({"gpt-4o": "gpt-4o-mini"}))["total"]["whatif_nanos"] == 150_000


async def test_another_price_table_reprices_everything(ledger: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("models:\n"
                     "  gpt-4o: {input: 2, output: 8, cached_input: 1}\n"
                     "  gpt-4o-mini: {input: 0.1, output: 0.4}\n"
                     "  claude-haiku-4-5: {input: 1, output: 5}\n")  # no cache rates: billed as input
    report = run(ledger, Scenario(prices=PriceTable.load([other], {}), prices_name=str(other)))
    expected = (800 * 2000 + 200 * 1000 + 500 * 8000) + (300 * 2000 + 100 * 8000) + (2000 * 100 + 50 * 400) \
        + (1000 * 1000 + 200 * 5000)
    assert report["total"]["whatif_nanos"] == expected == 9_420_000
    assert report["total"]["actual_nanos"] == ACTUAL


async def test_an_unknown_model_or_a_prices_file_without_it_is_an_error_naming_it(ledger: Path, tmp_path: Path) -> None:
    with pytest.raises(WhatIfError, match=r"--model gpt-4o=gpt-9: unknown model 'gpt-9'"):
        run(ledger, Scenario({"gpt-4o": "gpt-9"}))
    with pytest.raises(WhatIfError, match=r"--model gpt-7=gpt-4o-mini: unknown model 'gpt-7'"):
        run(ledger, Scenario({"gpt-7": "gpt-4o-mini"}))
    partial = tmp_path / "partial.yaml"
    partial.write_text("models:\n  gpt-4o: {input: 2, output: 8}\n")
    with pytest.raises(WhatIfError, match=r"no price for claude-haiku-4-5, gpt-4o-mini in the prices file .*partial"):
        run(ledger, Scenario(prices=PriceTable.load([partial], {}), prices_name=str(partial)))


async def test_the_command_prints_an_error_and_no_partial_table(ledger: Path, tmp_path: Path, capsys) -> None:
    since = ["--ledger", str(ledger), "--since", str(NOW)]
    assert main(["whatif", *since, "--model", "gpt-4o=gpt-9"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "unknown model 'gpt-9'" in captured.err
    partial = tmp_path / "partial.yaml"
    partial.write_text("models:\n  gpt-4o: {input: 2, output: 8}\n")
    assert main(["whatif", *since, "--prices", str(partial)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no price for claude-haiku-4-5, gpt-4o-mini" in captured.err
    assert main(["whatif", *since, "--model", "gpt-4o"]) == 2
    assert "expected FROM=TO" in capsys.readouterr().err


async def test_the_command_as_table_json_and_csv(ledger: Path, capsys) -> None:
    args = ["whatif", "--ledger", str(ledger), "--since", str(NOW), "--model", "gpt-4o=gpt-4o-mini"]
    assert main(args) == 0
    table = capsys.readouterr().out
    gpt_4o = next(line for line in table.splitlines() if line.startswith("gpt-4o "))
    assert gpt_4o.split() == ["gpt-4o", "3", "3", "100.0%", "0.009000000", "0.000540000", "-0.008460000", "exact"]
    assert "exact: the same tokens at gpt-4o-mini's price" in table
    assert main([*args, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total"]["difference_nanos"] == 540_000 - 9_000_000
    assert main([*args, "--format", "csv", "--by", "tag"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    by_tag = {row["tag"]: row for row in rows}
    assert set(by_tag) == {"summary", "eu", "(no tags)", "TOTAL"}
    assert by_tag["summary"]["actual_usd"] == "0.009260000"  # request 1 and request 4
    assert by_tag["summary"]["whatif_usd"] == "0.002445000"  # 435,000 + 2,010,000


async def test_batch_lines_are_repriced_at_the_batch_rate(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    line = request(1, "gpt-4o", 1000, 100, cached=200, tags="batch", batch_id="batch_1")
    await write_ledger(path, [replace(line, cost_nanos=PRICES.batch_cost_nanos("gpt-4o", _usage(line)))])
    report = run(path, Scenario({"gpt-4o": "gpt-4o-mini"}))
    assert report["total"]["actual_nanos"] == 800 * 1250 + 200 * 625 + 100 * 5000
    assert report["total"]["whatif_nanos"] == 800 * 75 + 200 * 37.5 + 100 * 300


def policies(*entries: dict) -> tuple:
    return validate({"policies": list(entries)}).policies


async def test_candidate_routes_are_exact_and_unknown_facts_are_not_estimable(ledger: Path) -> None:
    route = {"name": "mini-summaries", "type": "route", "to": "gpt-4o-mini", "match": {"tags": ["summary"]}}
    report = run(ledger, Scenario(policies=policies(route)), by="policy")
    by_policy = {group["group"]: group for group in report["groups"]}
    routed = by_policy["mini-summaries"]
    assert routed["requests"] == 2  # request 1 (gpt-4o) and request 4 (claude-haiku-4-5)
    assert (routed["actual_nanos"], routed["whatif_nanos"]) == (9_260_000, 435_000 + 500 * 150 + 100 * 75 + 400 * 150
                                                                + 200 * 600)
    assert report["total"]["not_estimable_requests"] == 0

    regex = {"name": "by-text", "type": "route", "to": "gpt-4o-mini", "match": {"last_message_regex": "summar"}}
    report = run(ledger, Scenario(policies=policies(regex)))
    total = report["total"]
    assert total["not_estimable_requests"] == 5 and total["whatif_nanos"] == total["actual_nanos"]  # left at actual
    assert any("last_message_regex: the ledger keeps no prompt text" in basis for basis in total["bases"])

    old = replace(KNOWN[0][0], request_id="old", has_tools=None, has_images=None, has_response_format=None,
                  cost_nanos=7_250_000)  # recorded before the request facts were kept
    ledger_rows = [*read_rows(ledger, NOW, NOW + 100), _row(old)]
    no_tools = {**route, "match": {**route["match"], "has_tools": False}}
    report = whatif(lambda: ledger_rows, Scenario(policies=policies(no_tools)), PRICES, by="tag", since=NOW,
                    until=NOW + 100)
    assert {g["group"]: g["not_estimable_requests"] for g in report["groups"]}["summary"] == 1


def _row(record: SpendRecord) -> dict:
    return {name: getattr(record, name) for name in SpendRecord.__dataclass_fields__}


async def test_a_deny_with_holdout_is_an_expected_value(ledger: Path) -> None:
    deny = {"name": "no-b", "type": "deny", "match": {"teams": ["b"]}, "holdout": 0.25}
    report = run(ledger, Scenario(policies=policies(deny)), by="team")
    team_b = {group["group"]: group for group in report["groups"]}["b"]
    assert team_b["whatif_nanos"] == 1_750_000 // 4
    assert "exact: refused, nothing paid (holdout 0.25: expected value)" in team_b["bases"]


async def test_concise_uses_the_holdout_effect_measured_in_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    def marked(n: int, mark: str, cost: int) -> SpendRecord:
        return replace(request(n, "gpt-4o-mini", 100, 50), cost_nanos=cost,
                       policies=orjson.dumps({"be-brief": {"mark": mark}}).decode())
    recorded = [marked(n, "treated", 40_000 + (n % 3) * 1000) for n in range(30)]
    recorded += [marked(100 + n, "held_out", 100_000 + (n % 3) * 1000) for n in range(30)]
    fresh = replace(request(200, "gpt-4o", 1000, 1000, team="new"), cost_nanos=12_500_000)
    await write_ledger(path, [*recorded, fresh])
    concise = {"name": "be-brief", "type": "concise"}
    report = whatif(lambda: read_rows(path, NOW, NOW + 300), Scenario(policies=policies(concise)), PRICES, by="team",
                    since=NOW, until=NOW + 300)
    ratio = 41_000 / 101_000  # treated mean / held-out mean
    assert report["measured"]["be-brief"]["ratio"] == pytest.approx(ratio)
    by_team = {group["group"]: group for group in report["groups"]}
    assert by_team["new"]["whatif_nanos"] == pytest.approx(12_500_000 * ratio, abs=1)
    [basis] = by_team["new"]["bases"]
    assert basis.startswith("holdout estimate: be-brief cost x0.406 (95% CI") and "30 treated / 30 held-out" in basis
    # the already treated keep what they paid; the held out would now be treated
    assert by_team["a"]["whatif_nanos"] == pytest.approx(30 * 41_000 + 30 * 101_000 * ratio, abs=30)

    unmeasured = {"name": "terse", "type": "cap", "max_tokens": 50}
    report = whatif(lambda: read_rows(path, NOW, NOW + 300), Scenario(policies=policies(unmeasured)), PRICES,
                    by="model", since=NOW, until=NOW + 300)
    assert report["total"]["not_estimable_requests"] == 61
    assert any("terse (cap) changes how many tokens are used" in basis for basis in report["total"]["bases"])


async def test_whatif_batch_counts_the_latency_tolerant_traffic(tmp_path: Path, capsys) -> None:
    path = tmp_path / "ledger.db"
    records = [
        replace(request(1, "gpt-4o", 1000, 100, tags="nightly"), cost_nanos=3_500_000),
        replace(request(2, "gpt-4o", 1000, 100, tags="chat-ui"), cost_nanos=3_500_000),
        replace(request(3, "gpt-4o", 1000, 100, tags="nightly", stream=True), cost_nanos=3_500_000),
        replace(request(4, "gpt-4o", 1000, 100, tags="batch", batch_id="b1"), cost_nanos=1_750_000),
        replace(request(5, "mistral-large-latest", 1000, 100, tags="nightly"), cost_nanos=2_600_000),
    ]
    await write_ledger(path, records, ts_now=True)
    assert main(["whatif", "--ledger", str(path), "--batch", "--format", "json"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    assert (total["requests"], total["already_batched"], total["eligible_requests"], total["tolerant_requests"],
            total["no_batch_price_requests"]) == (5, 1, 2, 1, 1)
    assert (total["tolerant_actual_nanos"], total["tolerant_batch_nanos"]) == (3_500_000, 1_750_000)
    assert total["eligible_saving_nanos"] == 2 * 1_750_000
    assert main(["whatif", "--ledger", str(path), "--batch"]) == 0
    assert "exact: the same tokens at each model's batch price" in capsys.readouterr().out


async def test_the_command_reads_candidate_policies_from_a_file(ledger: Path, tmp_path: Path, capsys) -> None:
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text("policies:\n  - {name: mini, type: route, to: gpt-4o-mini, match: {teams: [b]}}\n")
    args = ["whatif", "--ledger", str(ledger), "--since", str(NOW), "--policies", str(candidate), "--by", "policy",
            "--format", "json"]
    assert main(args) == 0
    groups = {group["group"]: group for group in json.loads(capsys.readouterr().out)["groups"]}
    assert groups["mini"]["whatif_nanos"] == 105_000 and groups["mini"]["actual_nanos"] == 1_750_000
    candidate.write_text("policies:\n  - {type: route, to: gpt-4o-mini, match: {colours: [red]}}\n")
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"{candidate}: policies[0].match.colours: unknown key" in captured.err


def test_tags_read_as_the_ledgers_json_array_or_comma_separated() -> None:
    from proxy.analysis.records import tags_of

    assert tags_of({"tags": "a,b"}) == tags_of({"tags": '["a", "b"]'}) == {"a", "b"}
    assert tags_of({"tags": ""}) == tags_of({"tags": "[]"}) == tags_of({"tags": None}) == frozenset()
