"""The fake upstream, seen through the real openai SDK: if the SDK parses it, the proxy meets the real wire format."""

import base64
import json
import math
import socket
import subprocess
import sys
import time
from array import array
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import urlopen

import openai
import pytest
import tiktoken
from openai import AsyncOpenAI, OpenAI

from tests.fake_upstream import FAKE_API_KEY, WORDS, FakeUpstream

USER = [{"role": "user", "content": "Tell me about rivers."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}},
            "required": ["city", "days", "metric"],
        },
    },
}


def tokens(text: str, model: str = "gpt-4o") -> int:
    return len(tiktoken.encoding_for_model(model).encode(text))


def chat_prompt_tokens(messages: list[dict[str, str]], model: str = "gpt-4o") -> int:
    """OpenAI's cookbook count, written out again here so that the fake's own code is not checking itself."""
    return 3 + sum(3 + sum(tokens(value, model) for value in m.values()) for m in messages)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:  # a thread of its own: the sync client below would block a shared loop
        yield fake


@pytest.fixture(scope="module")
def client(upstream: FakeUpstream) -> Iterator[OpenAI]:
    with OpenAI(base_url=upstream.base_url, api_key=upstream.api_key, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def aclient(upstream: FakeUpstream) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=upstream.base_url, api_key=upstream.api_key, max_retries=0) as sdk:
        yield sdk


def test_every_word_is_one_token_alone_and_after_a_space() -> None:
    assert len(set(WORDS)) == len(WORDS) == 128
    for name in ("o200k_base", "cl100k_base"):
        encoding = tiktoken.get_encoding(name)
        assert all(len(encoding.encode(w)) == len(encoding.encode(" " + w)) == 1 for w in WORDS)
        assert len(encoding.encode(" ".join(WORDS))) == len(WORDS)


# ---- chat completions ---------------------------------------------------------------------------------


def test_chat_usage_is_exact_and_the_model_is_the_snapshot(client: OpenAI) -> None:
    reply = client.chat.completions.create(model="gpt-4o", messages=USER)
    text = reply.choices[0].message.content or ""
    assert len(text.split()) == 40 and reply.choices[0].finish_reason == "stop"
    assert reply.model == "gpt-4o-2024-08-06" and reply.id.startswith("chatcmpl-")
    assert reply.usage is not None
    assert reply.usage.completion_tokens == tokens(text) == 40
    assert reply.usage.prompt_tokens == chat_prompt_tokens(USER)
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_chat_reply_is_deterministic_and_counted_with_cl100k_for_gpt_4(client: OpenAI, upstream: FakeUpstream) -> None:
    first = client.chat.completions.create(model="gpt-4", messages=USER, extra_headers={"x-fake-words": "12"})
    again = client.chat.completions.create(model="gpt-4", messages=USER, extra_headers={"x-fake-words": "12"})
    text = first.choices[0].message.content or ""
    assert text == again.choices[0].message.content == upstream.expected_text(USER, model="gpt-4", words=12)
    assert upstream.token_count(text, "gpt-4") == 12
    assert first.usage is not None and first.usage.completion_tokens == tokens(text, "gpt-4") == 12
    assert first.usage.prompt_tokens == chat_prompt_tokens(USER, "gpt-4")


async def test_chat_stream_has_no_usage_unless_asked(aclient: AsyncOpenAI, client: OpenAI) -> None:
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=USER).choices[0].message.content
    stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    assert len(chunks) == 1 + 40 + 1  # role, a word a chunk, finish


def test_chat_stream_with_include_usage_ends_with_a_usage_chunk(client: OpenAI) -> None:
    request: dict[str, Any] = {"model": "gpt-4.1", "messages": USER, "stream": True}
    with client.chat.completions.with_streaming_response.create(
        **request, stream_options={"include_usage": True}, extra_headers={"x-fake-words": "5"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(chunk["usage"] is None for chunk in chunks[:-1])  # the real API sends the key, null
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    assert chunks[-1]["usage"]["prompt_tokens"] == chat_prompt_tokens(USER)


def test_max_tokens_cuts_the_reply_with_finish_length(client: OpenAI) -> None:
    reply = client.chat.completions.create(model="gpt-4o", messages=USER, max_completion_tokens=7)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 7 == tokens(reply.choices[0].message.content or "")


def test_concise_system_message_gives_a_quarter_of_the_same_reply(client: OpenAI) -> None:
    full = client.chat.completions.create(model="gpt-4o", messages=USER).choices[0].message.content or ""
    concise = [{"role": "developer", "content": "Be CONCISE."}, *USER]
    short = client.chat.completions.create(model="gpt-4o", messages=concise).choices[0].message.content or ""
    assert len(short.split()) == 10 and full.startswith(short)


def test_reasoning_models_report_reasoning_tokens_inside_completion_tokens(client: OpenAI) -> None:
    reply = client.chat.completions.create(model="gpt-5", messages=USER, extra_headers={"x-fake-words": "6"})
    assert reply.usage is not None and reply.usage.completion_tokens_details is not None
    assert reply.usage.completion_tokens_details.reasoning_tokens == 12
    assert reply.usage.completion_tokens == 18


def test_n_choices_differ_and_are_all_counted(client: OpenAI) -> None:
    reply = client.chat.completions.create(model="gpt-4o", messages=USER, n=3, extra_headers={"x-fake-words": "4"})
    texts = [c.message.content for c in reply.choices]
    assert [c.index for c in reply.choices] == [0, 1, 2] and len(set(texts)) == 3
    assert reply.usage is not None and reply.usage.completion_tokens == 12



@pytest.mark.parametrize("create", ["chat", "completions"])
@pytest.mark.parametrize("n,code,said", [
    (10**9, "integer_above_max_value", "Invalid 'n': integer above maximum value. Expected a value <= 128, but got "
                                       "1000000000 instead."),
    (129, "integer_above_max_value", "Invalid 'n': integer above maximum value. Expected a value <= 128, but got "
                                     "129 instead."),
    (0, "integer_below_min_value", "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 "
                                   "instead."),
    (1e9, "invalid_type", "Invalid type for 'n': expected an integer, but got a decimal number instead."),
    ("2", "invalid_type", "Invalid type for 'n': expected an integer, but got a string instead."),
])
def test_an_n_out_of_range_is_openais_400_naming_it(client: OpenAI, create, n, code, said) -> None:
    """As OpenAI answers, before generating anything: n=1e9 must not make the fake generate a billion answers."""
    with pytest.raises(openai.BadRequestError) as refused:
        if create == "chat":
            client.chat.completions.create(model="gpt-4o", messages=USER, n=n)
        else:
            client.completions.create(model="gpt-3.5-turbo-instruct", prompt="rivers", n=n)
    assert refused.value.body == {"message": said, "type": "invalid_request_error", "param": "n", "code": code}

def test_tool_choice_naming_a_function_returns_its_call(client: OpenAI) -> None:
    forced = {"type": "function", "function": {"name": "get_weather"}}
    reply = client.chat.completions.create(model="gpt-4o", messages=USER, tools=[WEATHER_TOOL], tool_choice=forced)
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"  # OpenAI's way when the call was forced by name
    [call] = choice.message.tool_calls or []
    arguments = json.loads(call.function.arguments)
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    assert (type(arguments["city"]), type(arguments["days"]), type(arguments["metric"])) == (str, int, bool)
    assert reply.usage is not None and reply.usage.completion_tokens == tokens(call.function.arguments)


def test_tool_call_header_streams_the_arguments(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o", messages=USER, tools=[WEATHER_TOOL], stream=True, extra_headers={"x-fake-tool-call": "1"}
    )
    chunks = list(stream)
    opening = (chunks[0].choices[0].delta.tool_calls or [])[0]
    assert opening.function is not None and opening.function.name == "get_weather"
    pieces = [(c.choices[0].delta.tool_calls or [])[0].function for c in chunks[1:-1]]
    assert json.loads("".join(p.arguments or "" for p in pieces if p)).keys() == {"city", "days", "metric"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_response_format_json_schema_and_json_object_return_json(client: OpenAI) -> None:
    tags = {"type": "array", "items": {"type": "string"}}
    schema = {"type": "object", "properties": {"title": {"type": "string"}, "tags": tags}}
    structured = {"type": "json_schema", "json_schema": {"name": "note", "schema": schema, "strict": True}}
    reply = client.chat.completions.create(model="gpt-4o", messages=USER, response_format=structured)
    note = json.loads(reply.choices[0].message.content or "")
    assert isinstance(note["title"], str) and len(note["tags"]) == 2
    reply = client.chat.completions.create(model="gpt-4o", messages=USER, response_format={"type": "json_object"})
    assert json.loads(reply.choices[0].message.content or "")["answer"]


def test_cached_tokens_header_and_anthropic_usage(client: OpenAI) -> None:
    cached = client.chat.completions.create(model="gpt-4o", messages=USER, extra_headers={"x-fake-cached-tokens": "4"})
    assert cached.usage is not None and cached.usage.prompt_tokens_details is not None
    assert cached.usage.prompt_tokens_details.cached_tokens == 4
    headers = {"x-fake-anthropic-usage": "1", "x-fake-cached-tokens": "4", "x-fake-cache-write-tokens": "3"}
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER, extra_headers=headers)
    usage = json.loads(raw.text)["usage"]
    assert usage == {
        "input_tokens": cached.usage.prompt_tokens - 7,
        "output_tokens": 40,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 4,
    }


# ---- completions, embeddings, models ------------------------------------------------------------------


def test_legacy_completion_stops_at_16_tokens_by_default(client: OpenAI) -> None:
    reply = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time")
    assert reply.object == "text_completion" and reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == tokens(reply.choices[0].text, "gpt-4") == 16
    assert reply.usage.prompt_tokens == tokens("Once upon a time", "gpt-4")


async def test_legacy_completion_streams(aclient: AsyncOpenAI) -> None:
    stream = await aclient.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Hi", max_tokens=50, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 40


def test_embeddings_are_unit_vectors_the_same_in_float_and_base64(client: OpenAI) -> None:
    floats = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    decoded = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])  # the SDK asks for base64
    assert floats.data[0].embedding == decoded.data[0].embedding != floats.data[1].embedding
    assert len(floats.data[0].embedding) == 1536
    assert math.isclose(math.fsum(x * x for x in floats.data[0].embedding), 1.0, rel_tol=1e-5)
    assert floats.usage.prompt_tokens == 2 and floats.model == "text-embedding-3-small"


def test_embedding_dimensions_shorten_the_vector(client: OpenAI) -> None:
    short = client.embeddings.with_raw_response.create(
        model="text-embedding-3-large", input="river", dimensions=256, encoding_format="base64"
    )
    vector = array("f", base64.b64decode(json.loads(short.text)["data"][0]["embedding"]))
    assert len(vector) == 256 and math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-5)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="text-embedding-ada-002", input="river", dimensions=256)


def test_models_are_listed_and_retrieved(client: OpenAI) -> None:
    listed = {m.id for m in client.models.list()}
    assert {"gpt-4o", "text-embedding-3-small", "ft:gpt-4o-mini-2024-07-18:acme::abc123"} <= listed
    assert client.models.retrieve("ft:gpt-4o-mini-2024-07-18:acme::abc123").owned_by == "acme"


# ---- responses ----------------------------------------------------------------------------------------


def test_response_usage_counts_cache_and_reasoning(client: OpenAI) -> None:
    response = client.responses.create(
        model="gpt-5",
        input="Tell me about rivers.",
        instructions="Be concise.",
        extra_headers={"x-fake-cached-tokens": "2"},
    )
    assert response.status == "completed" and [item.type for item in response.output] == ["reasoning", "message"]
    assert len(response.output_text.split()) == 10
    assert response.usage is not None
    assert response.usage.output_tokens == 30 and response.usage.output_tokens_details.reasoning_tokens == 20
    assert response.usage.input_tokens_details.cached_tokens == 2
    messages = [{"role": "developer", "content": "Be concise."}, {"role": "user", "content": "Tell me about rivers."}]
    assert response.usage.input_tokens == chat_prompt_tokens(messages, "gpt-5")


def test_response_stream_events_come_in_order_and_parse(client: OpenAI) -> None:
    with client.responses.stream(model="gpt-4o", input=USER, extra_headers={"x-fake-words": "3"}) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.usage is not None and final.usage.output_tokens == tokens(final.output_text) == 3


def test_response_stream_names_each_event_and_stops_incomplete_at_max_output_tokens(client: OpenAI) -> None:
    with client.responses.with_streaming_response.create(
        model="gpt-4o", input="Hi", max_output_tokens=4, stream=True
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    names = [line.removeprefix("event: ") for line in lines[0::2]]
    payloads = [json.loads(line.removeprefix("data: ")) for line in lines[1::2]]
    assert [p["type"] for p in payloads] == names
    assert [p["sequence_number"] for p in payloads] == list(range(len(names)))
    assert names[-1] == "response.incomplete"
    assert payloads[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert payloads[-1]["response"]["usage"]["output_tokens"] == 4


# ---- errors and faults --------------------------------------------------------------------------------


def test_missing_or_wrong_key_is_rejected_like_openai(upstream: FakeUpstream) -> None:
    with OpenAI(base_url=upstream.base_url, api_key="sk-wrong-key-1234", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as rejected:
            wrong.models.list()
    assert rejected.value.code == "invalid_api_key"
    assert "Incorrect API key provided: sk-***" in rejected.value.message and "wrong-key" not in rejected.value.message
    with pytest.raises(HTTPError) as missing:  # the SDK refuses to send no key, so plain urllib does
        urlopen(upstream.base_url + "/models")
    assert missing.value.code == 401
    assert json.load(missing.value)["error"]["message"].startswith("You didn't provide an API key.")
    missing.value.close()


def test_unknown_model_is_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-9", messages=USER)
    assert missing.value.code == "model_not_found" and "`gpt-9` does not exist" in missing.value.message


def test_rate_limit_fault_tells_when_to_retry(client: OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="fake-429", messages=USER)
    headers = limited.value.response.headers
    assert limited.value.code == "rate_limit_exceeded" and headers["retry-after"] == "2"
    assert headers["x-ratelimit-remaining-tokens"] == "0" and headers["x-request-id"].startswith("req_")


def test_sdk_honours_retry_after_then_succeeds(upstream: FakeUpstream) -> None:
    headers = {
        "x-fake-fault": "429",
        "x-fake-fault-times": "1",
        "x-fake-fault-key": "retry",
        "x-fake-retry-after": "0.2",
    }
    with OpenAI(base_url=upstream.base_url, api_key=upstream.api_key, max_retries=1) as patient:
        started = time.perf_counter()
        reply = patient.chat.completions.create(model="gpt-4o", messages=USER, extra_headers=headers)
    assert time.perf_counter() - started >= 0.2 and reply.choices[0].finish_reason == "stop"
    assert sum(r.headers.get("x-fake-fault-key") == "retry" for r in upstream.requests) == 2


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        ("400", openai.BadRequestError, 400),
        ("500", openai.InternalServerError, 500),
        ("503", openai.InternalServerError, 503),
    ],
)
def test_error_faults_carry_openai_error_bodies(
    client: OpenAI, fault: str, error: type[openai.APIStatusError], status: int
) -> None:
    with pytest.raises(error) as failed:
        client.chat.completions.create(model="gpt-4o", messages=USER, extra_headers={"x-fake-fault": fault})
    assert failed.value.status_code == status and isinstance(failed.value.body, dict)
    assert failed.value.body["type"] == ("invalid_request_error" if fault == "400" else "server_error")
    assert (failed.value.param is not None) == (fault == "400")


def test_garbage_fault_is_not_json(client: OpenAI) -> None:
    with pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(model="fake-garbage", messages=USER)


def test_cut_stream_breaks_off_before_finishing(client: OpenAI) -> None:
    seen: list[str | None] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="fake-cut", messages=USER, stream=True):
            seen.append(chunk.choices[0].finish_reason)
    assert 0 < len(seen) < 40 and set(seen) == {None}


def test_no_usage_fault_ignores_include_usage(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="fake-no-usage", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason == "stop" and all(c.usage is None for c in chunks)


def test_timeout_fault_outlasts_the_client(client: OpenAI) -> None:
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="fake-timeout", messages=USER, timeout=0.1)


def test_latency_and_chunk_delay(client: OpenAI) -> None:
    started = time.perf_counter()
    headers = {"x-fake-latency-ms": "50", "x-fake-chunk-delay-ms": "10", "x-fake-words": "3"}
    list(client.chat.completions.create(model="gpt-4o", messages=USER, stream=True, extra_headers=headers))
    assert time.perf_counter() - started >= 0.05 + 5 * 0.01  # six events (role, 3 words, finish, [DONE]): five gaps


# ---- the harness itself -------------------------------------------------------------------------------


async def test_async_context_records_every_request() -> None:
    async with FakeUpstream(models=["my-model"]) as fake:
        async with AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0) as sdk:
            headers = {"x-client-request-id": "abc"}
            await sdk.chat.completions.create(model="my-model", messages=USER, extra_headers=headers)
    [seen] = fake.requests
    assert (seen.method, seen.path, seen.body["messages"]) == ("POST", "/v1/chat/completions", USER)
    assert seen.headers["authorization"] == seen.headers["Authorization"] == f"Bearer {fake.api_key}"
    assert seen.headers["x-client-request-id"] == "abc"


def test_runs_standalone() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "tests.fake_upstream", "--port", str(port)]
    server = subprocess.Popen(command, cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and "Running on" in server.stdout.readline()
        with OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=FAKE_API_KEY, max_retries=0) as sdk:
            assert sdk.chat.completions.create(model="gpt-4o", messages=USER).usage is not None
    finally:
        server.terminate()
        server.wait(5)
        server.stdout.close()  # type: ignore[union-attr]


def test_unknown_paths_get_openais_invalid_url_error(client: OpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.get("/chat/completions", cast_to=object)
    assert missing.value.message.endswith("Invalid URL (GET /v1/chat/completions)")
    assert upstream.requests[-1].path == "/v1/chat/completions"
