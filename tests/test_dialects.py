"""The dialects on hand-made bodies and streams: usage read exactly, translations both ways, breakpoints placed."""

import orjson
import pytest

from proxy.accounting.tokens import TokenCounter
from proxy.accounting.usage import Usage
from proxy.dialects import anthropic as messages
from proxy.dialects.anthropic_cache import place
from proxy.dialects.anthropic_tokens import claude_image_tokens
from proxy.dialects.chat_answer import ChatStream, chat_completion
from proxy.dialects.chat_request import messages_body
from proxy.dialects.messages_answer import MessagesStream, message
from proxy.dialects.messages_request import chat_body
from proxy.errors import BadRequest, RateLimited, UpstreamUnavailable
from proxy.stages.stream import SseRelay

TOKENS = TokenCounter()
CLAUDE = TOKENS.for_model("claude-sonnet-4-5")
START_USAGE = {"input_tokens": 12, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 900,
               "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
               "output_tokens": 1, "service_tier": "standard"}


def event(name: str, **payload) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **payload}) + b"\n\n"


STREAM = [
    event("message_start", message={"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                                    "content": [], "stop_reason": None, "usage": START_USAGE}),
    event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    event("ping"),
    event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Rhine, "}),
    event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Nile"}),
    event("content_block_stop", index=0),
    event("content_block_start", index=1, content_block={"type": "tool_use", "id": "toolu_1", "name": "map",
                                                         "input": {}}),
    event("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '{"zoom":'}),
    event("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": " 3}"}),
    event("content_block_stop", index=1),
    event("message_delta", delta={"stop_reason": "tool_use", "stop_sequence": None}, usage={"output_tokens": 25}),
    event("message_stop"),
]


def test_message_delta_keeps_what_message_start_said_of_the_input_and_its_cache_split() -> None:
    relay = SseRelay(messages.MESSAGES, hide_usage_chunk=False, price=None)
    stream = b"".join(STREAM)
    out = b"".join(relay.feed(stream[i:i + 7]) for i in range(0, len(stream), 7)) + relay.remainder()
    assert out == stream  # relayed byte for byte
    assert relay.done and relay.first_text_at is not None
    assert relay.usage == Usage(prompt_tokens=1212, completion_tokens=25, cached_prompt_tokens=900,
                                cache_write_tokens=300, cache_write_1h_tokens=200)
    assert "".join(relay.output_text()) == 'Rhine, Nile{"zoom": 3}'


def test_a_stream_cut_before_message_delta_has_only_its_start_usage() -> None:
    relay = SseRelay(messages.MESSAGES, hide_usage_chunk=False, price=None)
    relay.feed(b"".join(STREAM[:5]))
    assert relay.usage is None and not relay.done
    assert relay.partial_usage.prompt_tokens == 1212 and relay.partial_usage.completion_tokens == 1


def test_a_current_message_delta_restates_the_input() -> None:
    restated = {**START_USAGE, "cache_creation_input_tokens": 0, "output_tokens": 40}
    del restated["cache_creation"]
    usage = messages.merged_usage(restated, messages.merged_usage(START_USAGE, None))
    assert (usage.prompt_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens) == (912, 0, 0)


@pytest.mark.parametrize(("err", "kind"), [
    (BadRequest("x: bad"), "invalid_request_error"), (RateLimited("slow down"), "rate_limit_error"),
    (UpstreamUnavailable("gone"), "api_error")])
def test_errors_in_anthropics_shape(err, kind) -> None:
    response = messages.MESSAGES.error_response(err)
    assert response.status == err.status
    assert orjson.loads(response.body) == {"type": "error", "error": {"type": kind, "message": err.message}}


def test_chat_stream_from_anthropic_events() -> None:
    translated = ChatStream(include_usage=True, price=lambda usage: 1_500)
    out = b"".join(translated.feed(chunk) for chunk in STREAM)
    chunks = [orjson.loads(line[6:]) for line in out.split(b"\n\n") if line.startswith(b"data: {")]
    assert out.endswith(b"data: [DONE]\n\n") and translated.done
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content", "") for d in deltas) == "Rhine, Nile"
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0] == {"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "map", "arguments": ""}}
    assert "".join(c["function"]["arguments"] for c in calls) == '{"zoom": 3}'
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 900, "cache_write_tokens": 300}
    assert chunks[-1]["usage"]["cost_usd"] == 0.0000015
    assert all(c["usage"] is None for c in chunks[:-1])


def test_anthropic_stream_from_chat_chunks() -> None:
    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return b"data: " + orjson.dumps({"id": "c1", "model": "gpt-x", "choices": [
            {"index": 0, "delta": delta, "finish_reason": finish}], "usage": None}) + b"\n\n"

    usage = b"data: " + orjson.dumps({"id": "c1", "model": "gpt-x", "choices": [], "usage": {
        "prompt_tokens": 50, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 30}}}) + b"\n\n"
    stream = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}),
              chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}), chunk({}, "tool_calls"),
              usage, b"data: [DONE]\n\n"]
    translated = MessagesStream()
    out = b"".join(translated.feed(part) for part in stream)
    events = [orjson.loads(line.split(b"data: ", 1)[1]) for line in out.split(b"\n\n") if line]
    assert [e["type"] for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop", "content_block_start",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert events[4]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}
    assert events[7]["delta"]["stop_reason"] == "tool_use"
    assert events[7]["usage"] == {"input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 30,
                                  "output_tokens": 9}
    assert translated.done and translated.usage.prompt_tokens == 50


def test_whole_answers_both_ways() -> None:
    answer = {"id": "msg_1", "model": "claude-x", "stop_reason": "max_tokens", "usage": START_USAGE, "content": [
        {"type": "thinking", "thinking": "hidden", "signature": "s"}, {"type": "text", "text": "Rhine"},
        {"type": "tool_use", "id": "t1", "name": "map", "input": {"zoom": 3}}]}
    completion = chat_completion(answer)
    said = completion["choices"][0]
    assert said["finish_reason"] == "length" and said["message"]["content"] == "Rhine"
    assert said["message"]["tool_calls"][0]["function"] == {"name": "map", "arguments": '{"zoom":3}'}
    back = message(completion)
    assert back["content"] == [{"type": "text", "text": "Rhine"},
                               {"type": "tool_use", "id": "t1", "name": "map", "input": {"zoom": 3}}]
    assert back["stop_reason"] == "max_tokens" and back["usage"]["cache_read_input_tokens"] == 900


def test_a_chat_conversation_with_tools_as_a_messages_body() -> None:
    body = messages_body({
        "model": "claude-x", "max_tokens": 50, "parallel_tool_calls": False,
        "functions": [{"name": "f", "parameters": {"type": "object"}}], "function_call": {"name": "f"},
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Rules."}]},
            {"role": "user", "content": "Go."},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]},
            {"role": "tool", "tool_call_id": "a", "content": "one"},
            {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "two"}]},
            {"role": "user", "content": [{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}}]},
        ]}, default_max_tokens=1000, api_version="2026-10-21", upstream="claude")
    assert body["system"] == [{"type": "text", "text": "Rules."}] and body["max_tokens"] == 50
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]
    assert body["tool_choice"] == {"type": "tool", "name": "f", "disable_parallel_tool_use": True}
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "a", "content": "one"},
        {"type": "tool_result", "tool_use_id": "b", "content": [{"type": "text", "text": "two"}]},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}]


@pytest.mark.parametrize(("chat", "param"), [
    ({"messages": [{"role": "user", "content": "x", "name": "ann"}]}, "messages[0].name"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "[1]"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "minimal"}, "reasoning_effort"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "custom", "custom": {"name": "g"}}]},
     "tools[0]"),
])
def test_untranslatable_chat_fields_are_named(chat, param) -> None:
    with pytest.raises(BadRequest) as refused:
        messages_body({"model": "claude-x", **chat}, default_max_tokens=10, api_version="2026-10-21", upstream="u")
    assert refused.value.param == param


def test_a_messages_body_as_a_chat_body() -> None:
    chat = chat_body({
        "model": "gpt-x", "max_tokens": 20, "system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
        "stream": True, "stop_sequences": ["END"], "metadata": {"user_id": "u1"}, "thinking": {"type": "disabled"},
        "tools": [{"name": "f", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "high"},
        "messages": [
            {"role": "user", "content": "Go."},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"},
                                              {"type": "tool_use", "id": "a", "name": "f", "input": {"x": 1}}]},
            {"role": "user", "content": [
                {"type": "text", "text": "and", "cache_control": {"type": "ephemeral"}},
                {"type": "tool_result", "tool_use_id": "a", "is_error": True, "content": "boom"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]},
        ]}, upstream="openai")
    assert chat["messages"] == [
        {"role": "system", "content": "A\n\nB"}, {"role": "user", "content": "Go."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}]},
        {"role": "tool", "tool_call_id": "a", "content": "Error: boom"},
        {"role": "user", "content": [{"type": "text", "text": "and"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]
    assert (chat["tool_choice"], chat["parallel_tool_calls"], chat["stop"]) == ("required", False, ["END"])
    assert chat["stream_options"] == {"include_usage": True} and chat["max_completion_tokens"] == 20
    assert chat["response_format"]["json_schema"]["schema"] == {"type": "object"} and chat["reasoning_effort"] == "high"
    assert chat["user"] == "u1" and "cache_control" not in orjson.dumps(chat).decode()


@pytest.mark.parametrize(("extra", "param"), [
    ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0"),
    ({"top_k": 5}, "top_k"),
    ({"output_config": {"effort": "max"}}, "output_config.effort"),
])
def test_untranslatable_messages_fields_are_named(extra, param) -> None:
    with pytest.raises(BadRequest) as refused:
        chat_body({"model": "gpt-x", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], **extra},
                  upstream="openai")
    assert refused.value.param == param


LONG = "word " * 1500


def test_breakpoints_go_on_the_ends_of_stable_prefixes_only_when_long_enough() -> None:
    body = {"model": "claude-sonnet-4-5", "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "system": LONG, "messages": [
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": [{"type": "text", "text": "a1"},
                                                  {"type": "thinking", "thinking": "t", "signature": "s"}]},
                {"role": "user", "content": [{"type": "text", "text": "q2"}, {"type": "text", "text": ""}]}]}
    placed = place(body, CLAUDE, ttl="1h", parts=("tools", "system", "conversation"))
    assert placed == ["system", "messages.0", "messages.2"]  # the tools alone are too short to cache
    assert "cache_control" not in body["tools"][0]
    assert body["system"] == [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert "cache_control" in body["messages"][2]["content"][0]  # not on the empty text after it
    assert place(body, CLAUDE, ttl="1h", parts=("tools", "system", "conversation")) == []  # marked: left alone


def test_no_breakpoint_under_the_models_minimum_or_in_a_body_that_asks_for_automatic_caching() -> None:
    short = {"model": "claude-haiku-4-5", "system": "word " * 2000, "messages": [{"role": "user", "content": "q"}]}
    assert place(short, CLAUDE, ttl="5m", parts=("system",)) == []  # Haiku 4.5 caches from 4,096 tokens
    automatic = {"model": "claude-sonnet-4-5", "cache_control": {"type": "ephemeral"}, "system": LONG,
                 "messages": [{"role": "user", "content": "q"}]}
    assert place(automatic, CLAUDE, ttl="5m", parts=("system",)) == []


def test_claude_image_tokens_follow_anthropics_rule() -> None:
    assert claude_image_tokens(1000, 1000) == 1334  # 1000 x 1000 / 750, rounded up
    assert claude_image_tokens(4000, 3000) == 1532  # first scaled to 1.15 megapixels: 1238 x 928


def test_unknown_events_and_pings_translate_to_nothing() -> None:
    stream = ChatStream(include_usage=False, price=None)
    assert stream.feed(event("ping") + event("content_block_delta", index=0, delta={"type": "signature_delta",
                                                                                      "signature": "x"})) == b""
