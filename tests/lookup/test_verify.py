"""Verifiers through the proxy: an upstream chat model asked yes/no (the fake answers by a marker in the
questions: [same], [different], [unsure]) and a local cross-encoder; failures are misses, decisions cached."""

from pathlib import Path

import orjson
import pytest

from tests.lookup.conftest import MODEL_PATH, sdk
from tests.lookup.test_end_to_end import DARK_MODE, chat, lookups_of

STORED = "How do I turn on dark mode in the app?"
# 0.99: a paraphrase is never served on similarity alone; from 0.75 the verifier decides.
VERIFIED = {"name": "faq", "type": "semantic_cache", "embedder": "minilm", "threshold": 0.99,
            "verify": {"with": "gpt-4o-mini", "min_similarity": 0.75}}


def verifier_calls(fake) -> list:
    return [r for r in fake.requests if r.path == "/v1/chat/completions" and r.body.get("max_tokens") == 1]


def metric(proxy, verdict: str, remembered: str = "false") -> str:
    return (f'thriftgate_lookup_verifications_total{{policy="faq",remembered="{remembered}",verdict="{verdict}"}} '
            in proxy.metrics.render().decode())


async def test_a_candidate_the_verifier_confirms_is_served_and_its_cost_charged(start_lookups, fake) -> None:
    proxy = await start_lookups([VERIFIED])
    async with sdk(proxy) as client:
        await chat(client, proxy, STORED)
        hit = await chat(client, proxy, "How can I switch dark mode on? [same]")
        again = await chat(client, proxy, "How can I switch dark mode on? [same]")  # the decision is remembered
    assert hit.headers["x-thriftgate-lookup"] == again.headers["x-thriftgate-lookup"] == "semantic-hit"
    (call,) = verifier_calls(fake)
    assert call.body["temperature"] == 0 and call.body["model"] == "gpt-4o-mini"
    assert STORED in call.body["messages"][-1]["content"]
    record = await proxy.ledger.get(hit.headers["x-thriftgate-request-id"])
    lookup = lookups_of(record)["faq"]
    assert lookup["verified"] == "same" and lookup["verify_tokens"] > 0 and lookup["verify_cost_nanos"] > 0
    assert record["cost_nanos"] == lookup["verify_cost_nanos"]  # the local embedding is free
    saved = await proxy.ledger.get(again.headers["x-thriftgate-request-id"])
    assert record["savings_nanos"] == saved["savings_nanos"] - lookup["verify_cost_nanos"]  # net of verifying
    assert metric(proxy, "same") and metric(proxy, "same", remembered="true")


async def test_a_candidate_the_verifier_refuses_is_a_miss_that_cost_the_verification(start_lookups, fake) -> None:
    proxy = await start_lookups([VERIFIED])
    async with sdk(proxy) as client:
        await chat(client, proxy, STORED)
        miss = await chat(client, proxy, "How can I switch dark mode on? [different]")
    assert miss.headers["x-thriftgate-lookup"] == "miss"
    assert len(fake.requests) - len(verifier_calls(fake)) == 2  # answered upstream
    record = await proxy.ledger.get(miss.headers["x-thriftgate-request-id"])
    lookup = lookups_of(record)["faq"]
    assert lookup["verified"] == "different" and lookup["result"] == "miss"
    assert record["savings_nanos"] == -lookup["verify_cost_nanos"] < 0
    assert metric(proxy, "different")


@pytest.mark.parametrize("question,verify", [
    ("How can I switch dark mode on? [unsure]", {}),  # neither yes nor no
    ("How can I switch dark mode on? [same]", {"with": "fake-500"}),
    ("How can I switch dark mode on? [same]", {"with": "fake-timeout", "timeout_ms": 200}),
])
async def test_a_verifier_that_fails_makes_a_miss_never_a_hit(start_lookups, fake, question, verify) -> None:
    proxy = await start_lookups([{**VERIFIED, "verify": {**VERIFIED["verify"], **verify}}])
    async with sdk(proxy) as client:
        await chat(client, proxy, STORED)
        miss = await chat(client, proxy, question)
    assert miss.headers["x-thriftgate-lookup"] == "miss"
    record = await proxy.ledger.get(miss.headers["x-thriftgate-request-id"])
    assert lookups_of(record)["faq"]["verified"] == "failed" and "verify_cost_nanos" not in lookups_of(record)["faq"]
    assert len(verifier_calls(fake)) == 1 and metric(proxy, "failed")


async def test_above_the_threshold_no_verifier_is_asked_unless_always(start_lookups, fake) -> None:
    proxy = await start_lookups([{  # tried first: its verifier says no, then faq serves without asking
        **VERIFIED, "name": "strict", "threshold": 0.9, "verify": {**VERIFIED["verify"], "when": "always"}},
        {**VERIFIED, "threshold": 0.9}])
    async with sdk(proxy) as client:
        await chat(client, proxy, DARK_MODE + " [different]")
        repeat = await chat(client, proxy, DARK_MODE + " [different]")
    assert repeat.headers["x-thriftgate-lookup"] == "semantic-hit"  # faq: similarity 1.0, not verified
    record = await proxy.ledger.get(repeat.headers["x-thriftgate-request-id"])
    assert "verified" not in lookups_of(record)["faq"]
    assert lookups_of(record)["strict"]["verified"] == "different" and len(verifier_calls(fake)) == 1


@pytest.fixture(scope="session")
def cross_encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two tiny-headed pair models built from MiniLM: one always says same, one never does."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    out = {}
    for name, bias in (("same", 8.0), ("different", -8.0)):
        model = AutoModelForSequenceClassification.from_pretrained(MODEL_PATH, num_labels=1)
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.fill_(bias)
        directory = tmp_path_factory.mktemp(f"cross-encoder-{name}")
        model.save_pretrained(directory)
        AutoTokenizer.from_pretrained(MODEL_PATH).save_pretrained(directory)
        out[name] = str(directory)
    return out


@pytest.mark.parametrize("verdict,result", [("same", "semantic-hit"), ("different", "miss")])
async def test_a_local_cross_encoder_verifies_off_the_event_loop(start_lookups, fake, cross_encoders, verdict,
                                                                 result) -> None:
    proxy = await start_lookups([{**VERIFIED, "verify": {"with": "local", "model_path": cross_encoders[verdict],
                                                         "min_similarity": 0.75, "timeout_ms": 30000}}])
    async with sdk(proxy) as client:
        await chat(client, proxy, STORED)
        answer = await chat(client, proxy, "How can I switch dark mode on?")
    assert answer.headers["x-thriftgate-lookup"] == result and not verifier_calls(fake)
    record = await proxy.ledger.get(answer.headers["x-thriftgate-request-id"])
    lookup = lookups_of(record)["faq"]
    assert lookup["verified"] == verdict and "verify_cost_nanos" not in lookup


async def test_the_operating_point_is_reported(start_lookups, fake) -> None:
    import aiohttp

    proxy = await start_lookups([{"name": "faq", "type": "semantic_cache", "embedder": "minilm",
                                  "max_wrong_rate": 0.02}, {**VERIFIED, "name": "fixed"}])
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.url + "/admin/lookup/operating") as response:
            report = orjson.loads(await response.read())
    faq = report["faq"]
    assert faq["basis"] == "shipped" and faq["expected_precision"] >= 0.98 and faq["reachable"]
    assert 0.9 < faq["threshold"] < 1 and "substitution" not in faq["checks"]
    assert report["fixed"]["basis"] == "configured" and report["fixed"]["verify"]["with"] == "gpt-4o-mini"
    assert Path(faq["guard_model"]).name == "lookup_minilm.json"
