"""The shipped guard model: its checks and calibration, decisions on real held-out pairs, and config errors."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from proxy.config import ConfigError
from proxy.config_loading import validate
from proxy.control.config import LedgerConfig
from proxy.lookup import calibration, guard
from tests.lookup.conftest import EMBEDDERS, MODEL_PATH

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import qqp  # noqa: E402  (bench/qqp.py: the split the guard model was trained and measured on)

SAMPLE = 400  # pairs of the test part: stored first questions, asked second ones


def test_the_shipped_guard_model_keeps_the_checks_that_earned_their_place() -> None:
    model = calibration.load(calibration.SHIPPED)
    assert model.embedder_identity == calibration.model_identity(MODEL_PATH)
    assert "substitution" not in model.checks and {"negation", "number", "name"} <= set(model.checks)
    thresholds = [point.similarity for point in model.curve]
    assert thresholds == sorted(thresholds) and len(thresholds) > 20
    strict, lax = (calibration.operating_point(model.curve, rate, "shipped") for rate in (0.02, 0.15))
    assert strict.threshold > lax.threshold and strict.expected.precision >= 0.98 and strict.reachable
    assert not calibration.operating_point(model.curve, 1e-6, "shipped").reachable


def test_the_shipped_guard_decides_unseen_real_pairs_in_aggregate(local_models) -> None:
    """A fixed sample of the test part (never used to train or choose): precision well above the floor of a
    plain similarity threshold, at the default operating point."""
    pairs = qqp.parts()["test"][:SAMPLE]
    texts = sorted({text for pair in pairs for text in (pair.stored, pair.asked)})
    vectors = dict(zip(texts, local_models.load(MODEL_PATH).encode(texts, batch_size=64, normalize_embeddings=True)))
    model = calibration.load(calibration.SHIPPED)
    point = calibration.operating_point(model.curve, 0.10, "shipped")
    lookups = qqp.cache_lookups(pairs, vectors)
    chosen = []
    for lookup in lookups:
        asked = guard.facts(lookup.pair.asked)
        passed = [(text, score) for text, score in lookup.candidates
                  if guard.refusal(asked, guard.facts(text), model.checks) is None]
        chosen.append(passed[0][0] if passed and passed[0][1] >= point.threshold else None)
    outcome = qqp.served(lookups, chosen)
    assert outcome.served >= 40 and outcome.precision >= 0.82 and outcome.hit_rate >= 0.15, outcome.describe()
    assert np.isfinite(outcome.interval()).all()


def policy(**settings) -> dict:
    return {"policies": [{"name": "faq", "type": "semantic_cache", "embedder": "minilm", **settings}],
            "embedders": EMBEDDERS}


@pytest.mark.parametrize("settings,expected", [
    ({"threshold": 0.9, "max_wrong_rate": 0.02}, "policies[0] (faq).threshold: Value error, set threshold or max_wrong_rate, not both"),
    ({"guard_model": "/nonexistent/guard.json"}, "policies[0] (faq).guard_model: Value error, no guard model at"),
    ({"verify": {"with": "local"}}, "policies[0] (faq).verify: Value error, `with: local` needs model_path"),
    ({"verify": {"with": "local", "model_path": "/nonexistent"}},
     "policies[0] (faq).verify: Value error, model_path: no cross-encoder directory at /nonexistent"),
    ({"verify": {"with": "gpt-4o-mini", "model_path": MODEL_PATH}}, "model_path is for `with: local` only"),
    ({"verify": {"with": "gpt-4o-mini", "when": "sometimes"}}, "policies[0] (faq).verify.when"),
    ({"max_wrong_rate": 1.5}, "policies[0] (faq).max_wrong_rate"),
])
def test_bad_lookup_settings_are_config_errors_naming_the_policy(settings, expected) -> None:
    with pytest.raises(ConfigError) as caught:
        validate(policy(**settings))
    assert expected in str(caught.value)


def test_a_verifier_model_no_upstream_serves_is_a_config_error() -> None:
    config = policy(verify={"with": "claude-haiku"}) | {"upstreams": [
        {"name": "openai", "base_url": "http://127.0.0.1:1/v1", "models": ["gpt-*"]}]}
    with pytest.raises(ConfigError, match=r"policies\[0\] \(faq\): no upstream serves the model 'claude-haiku'"):
        validate(config)


def test_a_guard_model_that_is_not_one_is_a_config_error(tmp_path) -> None:
    broken = tmp_path / "guard.json"
    broken.write_text(json.dumps({"format": 1, "checks": ["telepathy"]}))
    with pytest.raises(ConfigError, match=r"policies\[0\] \(faq\).guard_model: .*unknown format or checks"):
        validate(policy(guard_model=str(broken)))


async def test_max_wrong_rate_without_a_calibration_for_the_embedder_fails_at_load(start_lookups, fake) -> None:
    with pytest.raises(ConfigError, match="policy faq: max_wrong_rate needs a calibration for the embedder 'small'"):
        await start_lookups([{"name": "faq", "type": "semantic_cache", "embedder": "small", "max_wrong_rate": 0.05}],
                            embedders={"small": {"type": "upstream", "upstream": "fake"}})


class _Embedder:
    identity = calibration.model_identity(MODEL_PATH)


def _lookups(shadow: dict) -> object:
    from prometheus_client import CollectorRegistry

    from proxy.accounting.metrics import Metrics
    from proxy.lookup.entries import MemoryEntries
    from proxy.lookup.service import Lookups

    return Lookups({"minilm": _Embedder()}, MemoryEntries(), Metrics(CollectorRegistry(), models=frozenset()), shadow=shadow)


def test_enough_shadow_verdicts_replace_the_shipped_calibration() -> None:
    from proxy.lookup.similar import _operating_point

    settings = validate(policy(max_wrong_rate=0.02)).policies[0]
    model = calibration.load(calibration.SHIPPED)
    # The operator's traffic: candidates from 0.85 up agree, below they do not.
    judged = tuple((0.80 + 0.001 * i, 0.80 + 0.001 * i >= 0.85) for i in range(200))
    few = _operating_point("faq", settings, model, _lookups({"faq": calibration.Verdicts(judged[:150], 400)}))
    enough = _operating_point("faq", settings, model, _lookups({"faq": calibration.Verdicts(judged, 400)}))
    assert few.basis == "shipped" and enough.basis == "shadow"
    assert enough.threshold == pytest.approx(0.85) and enough.expected.precision == 1.0
    assert enough.expected.hit_rate == pytest.approx(150 / 400)


async def test_shadow_verdicts_are_read_from_the_ledger_and_reported(start_lookups, fake, tmp_path, capsys) -> None:
    import asyncio

    from proxy import cli
    from tests.lookup.conftest import sdk
    from tests.lookup.test_end_to_end import DARK_MODE, FAQ, chat

    proxy = await start_lookups([{**FAQ, "mode": "shadow", "agreement": 0.99}])
    async with sdk(proxy) as client:
        for text in (DARK_MODE, DARK_MODE, "How can I switch on dark mode?"):
            await chat(client, proxy, text)
    await proxy.ledger.flush()
    ledger = str(tmp_path / "ledger.db")
    verdicts = calibration.shadow_verdicts(LedgerConfig(path=ledger), since=0)["faq"]
    assert verdicts.lookups == 3 and sorted(agreed for _, agreed in verdicts.judged) == [False, True]
    assert await asyncio.to_thread(cli.main, ["lookup", "report", "--ledger", ledger, "--json",
                                              "--max-wrong-rate", "0.02"]) == 0
    (faq,) = json.loads(capsys.readouterr().out)
    assert "operating_point" not in faq  # 2 verdicts: too few for any threshold
