"""Entry keys: byte-different but equal requests share one; anything that shapes the answer splits them."""

import pytest

from proxy.lookup import canonical
from tests.policies.helpers import exchange

USER = {"role": "user", "content": "What is the capital of France?"}
BASE = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Be brief."}, USER]}


@pytest.mark.parametrize("same", [
    {"messages": [{"content": "Be brief.", "role": "system"}, {"content": USER["content"], "role": "user"}],
     "model": "gpt-4o-mini"},
    {**BASE, "temperature": 1, "top_p": 1.0, "n": 1, "presence_penalty": 0, "frequency_penalty": 0.0},
    {**BASE, "stream": True, "stream_options": {"include_usage": True}, "user": "u-1", "metadata": {"a": "b"}},
    {**BASE, "max_tokens": 500},
    {**BASE, "messages": [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, USER]},
    {**BASE, "response_format": {"type": "text"}, "logprobs": False},
])
def test_equal_requests_share_a_key(same: dict) -> None:
    assert canonical.request_key("chat", same) == canonical.request_key("chat", BASE)


@pytest.mark.parametrize("different", [
    {**BASE, "temperature": 0.2},
    {**BASE, "model": "gpt-4o"},
    {**BASE, "messages": [{"role": "system", "content": "Be thorough."}, USER]},
    {**BASE, "messages": [USER]},
    {**BASE, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello"}, USER]},
    {**BASE, "response_format": {"type": "json_object"}},
    {**BASE, "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    {**BASE, "seed": 7},
])
def test_what_shapes_the_answer_splits_the_context(different: dict) -> None:
    ours, theirs = canonical.request_key("chat", different), canonical.request_key("chat", BASE)
    assert ours.context != theirs.context and ours.whole != theirs.whole
    assert ours.question == theirs.question == USER["content"]


def test_the_question_is_out_of_the_context_but_in_the_whole() -> None:
    other = {**BASE, "messages": [BASE["messages"][0], {"role": "user", "content": "And of Germany?"}]}
    assert canonical.request_key("chat", other).context == canonical.request_key("chat", BASE).context
    assert canonical.request_key("chat", other).whole != canonical.request_key("chat", BASE).whole


def test_a_conversation_ending_with_a_tool_result_has_no_question() -> None:
    body = {**BASE, "messages": [*BASE["messages"], {"role": "tool", "tool_call_id": "c1", "content": "42"}]}
    assert canonical.request_key("chat", body).question == ""


def test_tenants() -> None:
    ex = exchange("chat", BASE)
    assert [canonical.tenant(s, ex) for s in ("team", "key", "global")] == ["team:-", "key:-", "global"]
    ex.team, ex.key_id = "support", "k1"
    assert [canonical.tenant(s, ex) for s in ("team", "key", "global")] == ["team:support", "key:k1", "global"]
