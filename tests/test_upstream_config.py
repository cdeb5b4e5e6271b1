"""Upstream settings: the provider, its key and version; mistakes fail at load naming the entry."""

import pytest

from proxy.config import ConfigError
from proxy.config_loading import validate

ANTHROPIC = {"name": "claude", "base_url": "https://api.anthropic.com/v1", "provider": "anthropic"}


def test_an_anthropic_upstream_without_its_key_fails_at_load_naming_it(monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"upstreams\[1\] \(claude\): an Anthropic upstream needs an API key, and "
                                          r"\$ANTHROPIC_API_KEY is not set"):
        validate({"upstreams": [{"name": "o", "base_url": "http://o/v1"}, ANTHROPIC]})
    with pytest.raises(ConfigError, match="api_key_env is null"):
        validate({"upstreams": [{**ANTHROPIC, "api_key_env": None}]})


def test_each_provider_reads_its_own_key_by_default(monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    config = validate({"upstreams": [ANTHROPIC, {"name": "o", "base_url": "http://o/v1"}]})
    claude, openai = config.upstreams
    assert (claude.api_key_env, claude.api_key, claude.anthropic_version) == ("ANTHROPIC_API_KEY", "sk-ant-x",
                                                                               "2026-10-21")
    assert (openai.provider, openai.api_key_env) == ("openai", "OPENAI_API_KEY")


def test_with_an_anthropic_key_the_embedded_defaults_send_claude_models_to_anthropic(monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert [u.name for u in validate({}).upstreams] == ["openai"]
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    claude, openai = validate({}).upstreams
    assert (claude.provider, claude.models, claude.base_url) == ("anthropic", ("claude-*",),
                                                                 "https://api.anthropic.com/v1")
    assert openai.models == ("*",)


@pytest.mark.parametrize(("change", "message"), [
    ({"provider": "gemini"}, "upstreams[0].provider: Input should be 'openai' or 'anthropic'"),
    ({"anthropic_version": "latest"}, "upstreams[0].anthropic_version: String should match pattern"),
    ({"default_max_tokens": 0}, "upstreams[0].default_max_tokens: Input should be greater than 0"),
])
def test_bad_provider_settings_name_the_key(monkeypatch, change, message) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    with pytest.raises(ConfigError) as raised:
        validate({"upstreams": [{**ANTHROPIC, **change}]})
    assert message in str(raised.value)
