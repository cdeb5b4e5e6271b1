"""Policy configuration: the documented examples load; mistakes name the policy and the key."""

from pathlib import Path

import pytest

from proxy.config import ConfigError
from proxy.config_loading import load, validate

ROOT = Path(__file__).resolve().parents[2]
ISSUE_EXAMPLE = """
upstreams:
  - {name: openai, base_url: "https://api.openai.com/v1", models: ["gpt-*"]}
  - {name: vllm, base_url: "http://127.0.0.1:8000/v1", api_key_env: null, models: ["llama-*"]}
policies:
  - name: be-brief
    type: concise
    match: {models: ["gpt-4o*", "claude-*"]}
    instruction: "Answer concisely."
    holdout: 0.05
  - type: cap
    max_tokens: 1024
    n: 5
  - name: small-for-summaries
    type: route
    match: {models: ["gpt-4o"], last_message_regex: "(?i)summari[sz]e|tl;dr", max_prompt_tokens: 8000}
    to: gpt-4o-mini
  - name: prompt-heavy-to-self-hosted
    type: route
    match: {min_prompt_to_output_ratio: 20}
    to: llama-3.1-70b
  - name: cheap-first
    type: cascade
    match: {tags: [extraction]}
    try: gpt-4o-mini
    escalate_on: [truncated, empty, refusal, invalid_json]
"""


def test_the_issue_example_and_the_shipped_example_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-example")  # the example's Anthropic upstream needs its key
    path = tmp_path / "thriftgate.yaml"
    path.write_text(ISSUE_EXAMPLE)
    names = [p.name for p in load(path).policies]
    assert names == ["be-brief", "cap", "small-for-summaries", "prompt-heavy-to-self-hosted", "cheap-first"]
    assert [p.type for p in load(ROOT / "config" / "example.yaml").policies] == [
        "concise", "cap", "route", "route", "cascade", "exact_cache", "semantic_cache", "prompt_cache"]


@pytest.mark.parametrize("policy,message", [
    ({"name": "b", "type": "concise", "holdout": 1.5}, "policies[0] (b).holdout: Input should be less than 1"),
    ({"type": "cap", "max_tokens": 0}, "policies[0].max_tokens: Input should be greater than or equal to 1"),
    ({"type": "route"}, "policies[0].to: Field required"),
    ({"type": "cascade", "to": "x"}, "policies[0].try: Field required"),
    ({"type": "concise", "mode": "sometimes"}, "policies[0].mode: Input should be 'on', 'shadow' or 'off'"),
    ({"type": "concise", "match": {"modles": ["x"]}}, "policies[0].match.modles: unknown key"),
    ({"type": "concise", "match": {"tags": "x"}}, "policies[0].match.tags: Input should be a valid tuple"),
])
def test_mistakes_name_the_policy_and_the_key(policy: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate({"policies": [policy]}, source="t.yaml")
    assert f"t.yaml: {message}" in str(caught.value)


def test_policy_names_must_be_unique() -> None:
    with pytest.raises(ConfigError, match="repeated: x"):
        validate({"policies": [{"name": "x", "type": "concise"}, {"name": "x", "type": "deny"}]})
