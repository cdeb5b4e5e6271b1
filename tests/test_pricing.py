"""Prices and costs, checked against costs worked out by hand to the nano-dollar."""

import itertools
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from proxy.accounting.price import PRICE_FIELDS
from proxy.accounting.price_files import PricingError
from proxy.accounting.pricing import PriceTable, default_pricing_path
from proxy.accounting.pricing_import import convert_litellm, dump_yaml, import_file
from proxy.accounting.usage import Usage

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped() -> PriceTable:
    return PriceTable.load([default_pricing_path()], {})


def table_of(models: dict, tmp_path: Path, name: str = "prices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"models": models}), encoding="utf-8")
    return path


# --- costs from the shipped table (USD per 1M tokens in the comments) ---


def test_plain_chat(shipped):
    # gpt-4o-mini 0.15 in / 0.6 out: 1234 * 0.15 + 567 * 0.6 = 185.1 + 340.2 = 525.3 per 1M
    assert shipped.cost_nanos("gpt-4o-mini", Usage(prompt_tokens=1234, completion_tokens=567)) == 525_300


def test_openai_cached_input_is_part_of_prompt_tokens(shipped):
    # gpt-4o 2.5 in / 1.25 cached / 10 out: 500 * 2.5 + 1500 * 1.25 + 100 * 10 = 4125 per 1M
    usage = Usage(prompt_tokens=2000, completion_tokens=100, cached_prompt_tokens=1500)
    assert shipped.cost_nanos("gpt-4o", usage) == 4_125_000


def test_anthropic_cache_read_and_write(shipped):
    # claude-sonnet-4-5 3 in / 0.3 read / 3.75 write / 15 out:
    # 1000 * 3 + 6000 * 0.3 + 3000 * 3.75 + 200 * 15 = 3000 + 1800 + 11250 + 3000 = 19050 per 1M
    usage = Usage(prompt_tokens=10_000, completion_tokens=200, cached_prompt_tokens=6000, cache_write_tokens=3000)
    assert shipped.cost_nanos("claude-sonnet-4-5", usage) == 19_050_000


def test_anthropic_one_hour_cache_writes_have_their_own_rate(shipped):
    # claude-sonnet-4-5 3 in / 0.3 read / 3.75 5-minute write / 6 1-hour write / 15 out:
    # 1000 * 3 + 6000 * 0.3 + 2000 * 3.75 + 1000 * 6 + 200 * 15 = 3000 + 1800 + 7500 + 6000 + 3000 = 21300 per 1M
    usage = Usage(prompt_tokens=10_000, completion_tokens=200, cached_prompt_tokens=6000, cache_write_tokens=3000,
                  cache_write_1h_tokens=1000)
    assert shipped.cost_nanos("claude-sonnet-4-5", usage) == 21_300_000


def test_without_a_one_hour_rate_a_long_write_costs_a_write():
    # 1000 tokens written, 400 of them for an hour, all at the write rate of 2: 2000 per 1M
    table = PriceTable.load([], {"m": {"input": 1, "output": 1, "cache_write": 2}})
    usage = Usage(prompt_tokens=1000, cache_write_tokens=1000, cache_write_1h_tokens=400)
    assert table.cost_nanos("m", usage) == 2_000_000


def test_reasoning_tokens_on_an_o_series_model(shipped):
    # o3-mini 1.1 in / 4.4 out, reasoning billed as output: 123 * 1.1 + 567 * 4.4 + 4000 * 4.4 = 20230.1 per 1M
    usage = Usage(prompt_tokens=123, completion_tokens=4567, reasoning_tokens=4000)
    assert shipped.cost_nanos("o3-mini", usage) == 20_230_100


def test_embedding_model(shipped):
    # text-embedding-3-small 0.02 in: 10 * 0.02 = 0.2 per 1M = $0.0000002
    assert shipped.cost_nanos("text-embedding-3-small", Usage(prompt_tokens=10)) == 200


@pytest.mark.parametrize("model", ["ft:gpt-4o-mini-2024-07-18:acme:support-bot:AbC123", "ft:gpt-4o-mini:acme::AbC123"])
def test_fine_tuned_ids_get_the_fine_tuned_price(shipped, model):
    # ft:gpt-4o-mini-2024-07-18 0.3 in / 1.2 out: 1000 * 0.3 + 1000 * 1.2 = 1500 per 1M (base: 750)
    usage = Usage(prompt_tokens=1000, completion_tokens=1000)
    assert shipped.cost_nanos(model, usage) == 1_500_000
    assert shipped.cost_nanos("gpt-4o-mini", usage) == 750_000


def test_fine_tuned_id_of_an_unknown_base_is_unpriced_not_base_priced(shipped):
    assert shipped.lookup("gpt-5") is not None
    assert shipped.lookup("ft:gpt-5-2025-08-07:acme::x1") is None
    assert shipped.cost_nanos("ft:gpt-5-2025-08-07:acme::x1", Usage(prompt_tokens=1)) is None


@pytest.mark.parametrize(
    ("snapshot", "base"), [("gpt-4.1-mini-2099-01-01", "gpt-4.1-mini"), ("claude-opus-4-8-20990101", "claude-opus-4-8")]
)
def test_unlisted_dated_snapshot_falls_back_to_its_undated_name(shipped, snapshot, base):
    assert snapshot not in shipped.models
    assert shipped.lookup(snapshot) == shipped.lookup(base)


def test_dated_snapshot_fallback_cost(shipped):
    # gpt-4.1-mini 0.4 in / 1.6 out: 1000 * 0.4 + 1000 * 1.6 = 2000 per 1M
    usage = Usage(prompt_tokens=1000, completion_tokens=1000)
    assert shipped.cost_nanos("gpt-4.1-mini-2099-01-01", usage) == 2_000_000


def test_listed_snapshot_keeps_its_own_price(shipped):
    assert shipped.lookup("gpt-4o-2024-05-13").input == Decimal("5")
    assert shipped.lookup("gpt-4o").input == Decimal("2.5")


@pytest.mark.parametrize(
    ("sent", "listed"), [("openai/gpt-4o-mini", "gpt-4o-mini"), ("gemini/gemini-2.5-flash", "gemini-2.5-flash")]
)
def test_provider_prefixed_name(shipped, sent, listed):
    usage = Usage(prompt_tokens=1000, completion_tokens=10)
    assert shipped.cost_nanos(sent, usage) == shipped.cost_nanos(listed, usage) is not None


def test_unknown_model_is_unpriced(shipped):
    assert shipped.lookup("no-such-model") is None
    assert shipped.cost_nanos("no-such-model", Usage(prompt_tokens=5)) is None
    assert shipped.estimate_nanos("no-such-model", 5, 5) is None


# --- rules, on small tables ---


def test_reasoning_price_of_its_own():
    table = PriceTable.load([], {"thinker": {"input": 1, "output": 2, "reasoning": 3}})
    # 6 * 2 + 4 * 3 = 24 per 1M
    assert table.cost_nanos("thinker", Usage(completion_tokens=10, reasoning_tokens=4)) == 24_000


def test_zero_cache_price_is_a_price_not_a_missing_one():
    table = PriceTable.load([], {"m": {"input": 1, "output": 1, "cached_input": 0}})
    assert table.cost_nanos("m", Usage(prompt_tokens=1000, cached_prompt_tokens=1000)) == 0


def test_cost_is_rounded_once_half_up():
    table = PriceTable.load([], {"m": {"input": "0.0004", "output": "0.0004"}, "h": {"input": "0.0005", "output": 0}})
    # 0.4 + 0.4 = 0.8 nano-dollars -> 1 (rounding each part first would give 0); 0.5 -> 1
    assert table.cost_nanos("m", Usage(prompt_tokens=1, completion_tokens=1)) == 1
    assert table.cost_nanos("h", Usage(prompt_tokens=1)) == 1


def test_whole_nanos_per_token_cost_what_the_decimal_arithmetic_gives(shipped):
    """Rates of whole nano-dollars per token are priced in integers; a fraction of one keeps the Decimal way."""
    from proxy.accounting.money import usd_to_nanos
    from proxy.accounting.price import ceiling_per_million, cost_per_million

    table = PriceTable.load([default_pricing_path()], {"frac": {"input": "0.0375", "output": "1.2345"}})
    usage = Usage(prompt_tokens=123_457, completion_tokens=9_876, cached_prompt_tokens=2_000, cache_write_tokens=300,
                  cache_write_1h_tokens=100, reasoning_tokens=500)
    for model in sorted(table.models):
        price = table.lookup(model)
        assert table.cost_nanos(model, usage) == usd_to_nanos(cost_per_million(price, usage).scaleb(-6)), model
        assert table.estimate_nanos(model, 777, 4_096) == usd_to_nanos(
            ceiling_per_million(price, 777, 4_096).scaleb(-6)), model
    assert table.cost_nanos("frac", Usage(prompt_tokens=1)) == 38  # 37.5, half up
    assert table.cost_nanos("frac", Usage(prompt_tokens=1, completion_tokens=1)) == 1_272  # 37.5 + 1234.5


def test_overrides_win_over_files_exactly_and_by_glob(tmp_path):
    file = table_of({"gpt-4o": {"input": 2.5, "output": 10}, "llama-3-70b": {"input": 9, "output": 9}}, tmp_path)
    overrides = {"gpt-4o": {"input": "2", "output": 8}, "llama-*": {"input": 0.5, "output": 0.75}}
    table = PriceTable.load([file], overrides)
    assert table.lookup("gpt-4o").input == Decimal("2")
    assert table.lookup("llama-3-70b").output == Decimal("0.75")
    assert table.lookup("groq/llama-3-8b").input == Decimal("0.5")
    assert table.models == {"gpt-4o", "llama-3-70b"}


def test_later_files_win(tmp_path):
    first = table_of({"m": {"input": 1, "output": 1, "cached_input": 0.5}}, tmp_path, "a.yaml")
    second = table_of({"m": {"input": 3, "output": 3}}, tmp_path, "b.yaml")
    price = PriceTable.load([first, second], {}).lookup("m")
    # the later entry replaces the earlier one whole: no stale cached_input
    assert (price.input, price.cached_input, price.source) == (Decimal(3), None, str(second))


def test_exact_entry_wins_over_a_pattern_of_the_same_source():
    table = PriceTable.load([], {"gpt-*": {"input": 9, "output": 9}, "gpt-x": {"input": 1, "output": 1}})
    assert table.lookup("gpt-x").input == 1
    assert table.lookup("gpt-y").input == 9


@pytest.mark.parametrize(
    ("value", "shown"), [(-1, "-1"), ("abc", "'abc'"), (True, "True"), ("nan", "'nan'"), ([1], "[1]")]
)
def test_bad_override_value_names_the_key(value, shown):
    with pytest.raises(PricingError) as caught:
        PriceTable.load([], {"my-model": {"input": value, "output": 1}}, overrides_origin="thriftgate.yaml")
    assert str(caught.value) == (
        f"thriftgate.yaml: my-model.input: expected a non-negative number of USD per 1M tokens, got {shown}"
    )


def test_missing_output_and_unknown_field_are_errors():
    with pytest.raises(PricingError, match=r"m\.output: expected a non-negative number"):
        PriceTable.load([], {"m": {"input": 1}})
    with pytest.raises(PricingError, match=r"m\.cache_read: expected one of the fields provider, input"):
        PriceTable.load([], {"m": {"input": 1, "output": 1, "cache_read": 1}})


def test_bad_file_names_the_file_and_key(tmp_path):
    path = table_of({"m": {"input": 1, "output": -2}}, tmp_path)
    with pytest.raises(PricingError, match=rf"^{path}: models\.m\.output: expected"):
        PriceTable.load([path], {})
    (tmp_path / "flat.yaml").write_text("gpt-4o: {input: 1, output: 2}\n")
    with pytest.raises(PricingError, match=r"flat\.yaml: \(top level\): expected one key, 'models'"):
        PriceTable.load([tmp_path / "flat.yaml"], {})
    with pytest.raises(PricingError, match=r"missing\.yaml: cannot read"):
        PriceTable.load([tmp_path / "missing.yaml"], {})


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "o3-mini", "gpt-4o", "text-embedding-3-small"])
def test_estimate_is_never_below_the_cost_of_any_split(shipped, model):
    prompt, completion = 1000, 300
    ceiling = shipped.estimate_nanos(model, prompt, completion)
    splits = itertools.product(range(0, prompt + 1, 250), range(0, prompt + 1, 250), range(0, completion + 1, 100))
    for cached, written, reasoning in splits:
        usage = Usage(
            prompt_tokens=prompt, completion_tokens=completion, cached_prompt_tokens=cached,
            cache_write_tokens=min(written, prompt - cached), reasoning_tokens=reasoning,
        )
        assert shipped.cost_nanos(model, usage) <= ceiling


def test_estimate_prices_prompt_at_the_dearest_prompt_rate_and_output_at_the_dearest_output_rate():
    table = PriceTable.load([], {"m": {"input": 3, "output": 15, "cache_write": "3.75", "reasoning": 20}})
    # 1000 * 3.75 + 100 * 20 = 5750 per 1M
    assert table.estimate_nanos("m", 1000, 100) == 5_750_000


def test_lookup_memory_is_bounded(shipped):
    for n in range(10_000):
        shipped.lookup(f"garbage-{n}")
    assert len(shipped._resolved) <= 4096  # the memo is private; its bound is the promise under test
    assert shipped.lookup("gpt-4o") is not None


# --- the LiteLLM import and the shipped table ---

LITELLM_SAMPLE = {
    "sample_spec": {"litellm_provider": "one of ...", "mode": "chat"},
    "gpt-4o-mini": {
        "litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1.5e-07,
        "output_cost_per_token": 6e-07, "cache_read_input_token_cost": 7.5e-08,
        "output_cost_per_reasoning_token": 6e-07, "source": "https://openai.com/api/pricing",
    },
    "azure/gpt-4o-mini": {
        "litellm_provider": "azure", "mode": "chat", "input_cost_per_token": 1.65e-07, "output_cost_per_token": 6.6e-07,
    },
    "gemini/gemini-x": {
        "litellm_provider": "gemini", "mode": "chat", "input_cost_per_token": 0, "output_cost_per_token": 0,
    },
    "gemini-x": {"litellm_provider": "gemini", "mode": "chat", "input_cost_per_token": 3e-07, "output_cost_per_token": 1e-06},
    "deepseek/deepseek-chat": {
        "litellm_provider": "deepseek", "mode": "chat", "input_cost_per_token": 2.8e-07,
        "output_cost_per_token": 4.2e-07, "cache_creation_input_token_cost": 0.0,
    },
    "mistral/mistral-embed": {"litellm_provider": "mistral", "mode": "embedding", "input_cost_per_token": 1e-07},
    "claude-x": {
        "litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
        "cache_creation_input_token_cost": 3.75e-06, "cache_creation_input_token_cost_above_1hr": 6e-06,
        "input_cost_per_token_batches": 1.5e-06,
    },
    "ft:gpt-4-0613": {
        "litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 3e-05, "output_cost_per_token": 6e-05,
        "source": "OpenAI needs to add pricing for this ft model. Defaulting to base model pricing",
    },
    "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04},
}


def test_convert_litellm():
    models = convert_litellm(LITELLM_SAMPLE, source_name="the map", as_of="2026-10-21")["models"]
    assert models == {
        "claude-x": {
            "provider": "anthropic", "input": Decimal("3"), "output": Decimal("15"), "cache_write": Decimal("3.75"),
            "cache_write_1h": Decimal("6"), "batch_input": Decimal("1.5"), "source": "the map", "as_of": "2026-10-21",
        },
        # 0.0 cache write dropped: absent bills writes as input, never as free
        "deepseek-chat": {
            "provider": "deepseek", "input": Decimal("0.28"), "output": Decimal("0.42"),
            "source": "the map", "as_of": "2026-10-21",
        },
        # the gemini/ entry wins over the bare key; the azure copy and the image model are left out
        "gemini-x": {"provider": "gemini", "input": Decimal(0), "output": Decimal(0), "source": "the map", "as_of": "2026-10-21"},
        # reasoning equal to output is dropped
        "gpt-4o-mini": {
            "provider": "openai", "input": Decimal("0.15"), "output": Decimal("0.6"), "cached_input": Decimal("0.075"),
            "source": "https://openai.com/api/pricing", "as_of": "2026-10-21",
        },
        "mistral-embed": {
            "provider": "mistral", "input": Decimal("0.1"), "output": Decimal(0), "source": "the map", "as_of": "2026-10-21",
        },
    }


def test_dump_yaml_writes_exact_decimals():
    table = convert_litellm(LITELLM_SAMPLE, source_name="the map", as_of="2026-10-21", providers={"openai"})
    text = dump_yaml(table)
    assert "    input: 0.15\n    output: 0.6\n    cached_input: 0.075\n" in text
    assert_plain_decimals(text)


def assert_plain_decimals(text: str) -> None:
    prices = re.findall(rf"^    (?:{'|'.join(PRICE_FIELDS)}): (.*)$", text, flags=re.MULTILINE)
    assert prices
    for price in prices:
        assert re.fullmatch(r"\d+(\.\d+)?", price), price


def test_import_file_round_trips(tmp_path):
    source = tmp_path / "model_prices.json"
    source.write_text(json.dumps(LITELLM_SAMPLE))
    out = tmp_path / "pricing.yaml"
    text, count = import_file(source, providers={"openai", "anthropic"})
    assert count == 2
    out.write_text(text)
    table = PriceTable.load([out], {})
    assert table.models == {"gpt-4o-mini", "claude-x"}
    assert table.lookup("gpt-4o-mini").cached_input == Decimal("0.075")
    assert table.lookup("claude-x").source == "LiteLLM price map model_prices.json"


def test_shipped_table_covers_every_provider_with_provenance(shipped):
    by_provider = {}
    for name in shipped.models:
        price = shipped.lookup(name)
        assert price.source and price.as_of, name
        by_provider.setdefault(price.provider, set()).add(name)
    assert {"openai", "anthropic", "gemini", "mistral", "deepseek"} <= set(by_provider)
    for embedding in ("text-embedding-3-small", "gemini-embedding-001", "mistral-embed"):
        assert embedding in shipped.models
    assert_plain_decimals(default_pricing_path().read_text(encoding="utf-8"))


def test_default_path_is_the_config_file():
    assert default_pricing_path().resolve() == (REPO / "config" / "pricing.yaml").resolve()
