"""Budget, auth and store settings: mistakes fail at load, naming the file, the entry and what was expected."""

import json
from pathlib import Path

import pytest
import yaml

from proxy.config import ConfigError
from proxy.config_loading import load
from tests.conftest import UPSTREAM_KEY_ENV, base_config
from tests.processes import thriftgate


def write(tmp_path: Path, **sections) -> Path:
    path = tmp_path / "thriftgate.yaml"
    path.write_text(yaml.safe_dump({**base_config("http://127.0.0.1:9/v1", tmp_path), **sections}))
    return path


@pytest.mark.parametrize("budget,expected", [
    ({"scope": "tema:support", "usd": 5, "window": "day"}, "budgets[0].scope: Value error, unknown scope kind 'tema'"),
    ({"scope": "team:", "usd": 5, "window": "day"}, "budgets[0].scope: Value error, expected 'global' alone"),
    ({"scope": "global", "usd": -5, "window": "day"}, "budgets[0].usd: Input should be greater than 0"),
    ({"scope": "global", "usd": 5, "window": "week"}, "budgets[0].window: Input should be 'minute', 'hour', 'day'"),
    ({"scope": "global", "usd": 5}, "budgets[0]: Value error, usd and window go together"),
    ({"scope": "global"}, "budgets[0]: Value error, a budget needs usd"),
    ({"scope": "global", "tokens_per_minute": 0}, "budgets[0].tokens_per_minute: Input should be greater than 0"),
    # Redis counts in Lua's doubles: past 2**53 a limit (and a reservation as large) would not be exact.
    ({"scope": "global", "usd": 10_000_000, "window": "month"},
     "budgets[0].usd: Input should be less than or equal to 9007199.254740991"),
    ({"scope": "global", "tokens_per_minute": 2**53}, "budgets[0].tokens_per_minute: Input should be less than or equal to 9007199254740991"),
    ({"scope": "global", "usd": 5, "window": "day", "soft_limit": 0.8},
     "budgets[0]: Value error, on_exhausted: downgrade and soft_limit need a usd budget and downgrade_to"),
    ({"scope": "global", "usd": 5, "window": "day", "soft_limit": 1.5, "downgrade_to": "gpt-4o-mini"},
     "budgets[0].soft_limit: Input should be less than 1"),
    ({"scope": "global", "usd": 5, "window": "day", "downgrade_to": "gpt-4o-mini"},
     "budgets[0]: Value error, downgrade_to is used only with"),
    ({"scope": "global", "usd": 5, "window": "day", "on_exhausted": "shrug"}, "budgets[0].on_exhausted: Input should be"),
    ({"scope": "global", "usd": 5, "window": "day", "limit": 3}, "budgets[0].limit: unknown key"),
])
def test_a_bad_budget_fails_at_load_naming_the_entry(tmp_path: Path, budget: dict, expected: str) -> None:
    path = write(tmp_path, budgets=[{"scope": "global", "requests_per_minute": 10}, budget])
    with pytest.raises(ConfigError) as raised:
        load(path)
    assert f"{path}: {expected.replace('budgets[0]', 'budgets[1]')}" in str(raised.value)


def test_a_downgrade_to_a_model_no_upstream_serves_fails(tmp_path: Path) -> None:
    config = base_config("http://127.0.0.1:9/v1", tmp_path)
    config["upstreams"][0]["models"] = ["gpt-4o"]
    path = tmp_path / "thriftgate.yaml"
    path.write_text(yaml.safe_dump({**config, "budgets": [
        {"scope": "global", "usd": 5, "window": "day", "soft_limit": 0.5, "downgrade_to": "gpt-4o-mini"}]}))
    with pytest.raises(ConfigError, match=r"budgets\[0\]\.downgrade_to: no upstream serves the model 'gpt-4o-mini'"):
        load(path)


@pytest.mark.parametrize("auth,expected", [
    ({"keys": [{"id": "a", "team": "t", "sha256": "abc"}]}, "auth.keys[0].sha256: String should match pattern"),
    ({"keys": [{"id": "a", "team": "t", "sha256": "a" * 64}, {"id": "a", "team": "u", "sha256": "b" * 64}]},
     "auth.keys: Value error, key ids must be unique, repeated: a"),
    ({"required": "sometimes"}, "auth.required: Input should be a valid boolean"),
])
def test_bad_auth_settings_fail_at_load(tmp_path: Path, auth: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(write(tmp_path, auth=auth))
    assert expected in str(raised.value)


def test_check_config_hides_the_master_key_and_the_redis_password(tmp_path: Path) -> None:
    path = write(tmp_path, store={"backend": "redis", "redis_url": "redis://user:s3cret@redis.internal:6380/2"},
                 budgets=[{"scope": "team:support", "usd": "50", "window": "day"}])
    result = thriftgate("check-config", str(path), env={"THRIFTGATE_MASTER_KEY": "master-s3cret",
                                                        UPSTREAM_KEY_ENV: "sk-x"})
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    shown = json.loads(result.stdout)
    assert shown["store"]["redis_url"] == "redis://user:***@redis.internal:6380/2"
    assert shown["auth"]["master_key_env"] == "THRIFTGATE_MASTER_KEY (set)"
    assert shown["budgets"][0]["usd"] == "50"


def test_workers_need_a_shared_store_for_budgets(tmp_path: Path) -> None:
    path = write(tmp_path, budgets=[{"scope": "global", "usd": 5, "window": "day"}])
    result = thriftgate("serve", "--config", str(path), "--workers", "2", "--port", "4198")
    assert result.returncode == 2 and "store.backend: redis" in result.stderr
