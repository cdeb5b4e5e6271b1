"""One handler per endpoint: read the request as OpenAI would, generate, answer in its wire format."""

import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from tests.fake import wire
from tests.fake.call import Call, error_response, send_json, send_stream
from tests.fake.content import TEXT, OutputShape, encoded_embedding, is_reasoning_model, unit_vector
from tests.fake.gate import is_known, model_not_found
from tests.fake.tokens import chat_prompt_tokens, prompt_list, text_of

EMBEDDING_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072}
DEFAULT_EMBEDDING_DIMENSIONS = 1536
MAX_EMBEDDING_DIMENSIONS = 3072
LEGACY_DEFAULT_MAX_TOKENS = 16  # /v1/completions stops at 16 tokens unless told otherwise, as OpenAI's does
MAX_CHOICES = 128  # OpenAI's bound on n, checked before anything is generated
JSON_KINDS = {bool: "a boolean", float: "a decimal number", str: "a string", list: "an array", dict: "an object"}


def integer_refusal(call: Call, name: str, low: int, high: int) -> web.Response | None:
    """OpenAI's 400 for an integer parameter of another type or out of its range; None when it is absent or fits."""
    value = call.body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        message = f"Invalid type for '{name}': expected an integer, but got {JSON_KINDS[type(value)]} instead."
        return error_response(call, 400, wire.error_body(message, "invalid_request_error", name, "invalid_type"))
    if low <= value <= high:
        return None
    side, code, bound = ("below minimum", "integer_below_min_value", f">= {low}") if value < low else (
        "above maximum", "integer_above_max_value", f"<= {high}")
    message = f"Invalid '{name}': integer {side} value. Expected a value {bound}, but got {value} instead."
    return error_response(call, 400, wire.error_body(message, "invalid_request_error", name, code))


def json_shape(response_format: Any) -> OutputShape:
    """json_object or json_schema, as chat's response_format ({json_schema: {schema}}) or the Responses API's
    text.format ({schema}) spell them."""
    if not isinstance(response_format, dict) or response_format.get("type") not in ("json_object", "json_schema"):
        return TEXT
    if response_format["type"] == "json_object":
        return OutputShape("json")
    nested = response_format.get("json_schema") or {}
    return OutputShape("json", response_format.get("schema") or nested.get("schema") or {})


def chat_shape(call: Call) -> OutputShape:
    """A tool call when tool_choice names a function or says "required", or x-fake-tool-call: 1 asks; else text.

    Like OpenAI, a call forced by name finishes with "stop", one the model chose with "tool_calls"."""
    functions = [tool["function"] for tool in call.body.get("tools") or [] if tool.get("type") == "function"]
    choice = call.body.get("tool_choice")
    if functions and isinstance(choice, dict):
        named = (choice.get("function") or {}).get("name")
        function = next((f for f in functions if f.get("name") == named), functions[0])
        return OutputShape("tool", function.get("parameters") or {}, function["name"], "stop")
    if functions and (choice == "required" or (call.knobs.tool_call and choice != "none")):
        return OutputShape("tool", functions[0].get("parameters") or {}, functions[0]["name"], "tool_calls")
    return json_shape(call.body.get("response_format"))


def last_user_text(messages: Iterable[Mapping[str, Any]]) -> str:
    return next((text_of(m.get("content")) for m in reversed(list(messages)) if m.get("role") == "user"), "")


def asks_concise(messages: Iterable[Mapping[str, Any]]) -> bool:
    """A system or developer message saying "concise" gets a quarter of the words: the concise policy's effect."""
    return any(
        m.get("role") in ("system", "developer") and "concise" in text_of(m.get("content")).lower() for m in messages
    )


async def chat_completions(call: Call) -> web.StreamResponse:
    if (refusal := integer_refusal(call, "n", 1, MAX_CHOICES)) is not None:
        return refusal
    messages = call.body["messages"]
    budget = call.body.get("max_completion_tokens") or call.body.get("max_tokens")
    prompt, concise, n = last_user_text(messages), asks_concise(messages), call.body.get("n") or 1
    choices = call.replies(prompt, concise=concise, shape=chat_shape(call), budget=budget, n=n)
    counts = call.counts(chat_prompt_tokens(messages, call.model, call.body.get("tools")), choices)
    usage = wire.chat_usage(counts, call.knobs.anthropic_usage)
    kind = "chat.completion.chunk" if call.body.get("stream") else "chat.completion"
    head = wire.object_head(call.object_id("chatcmpl-"), int(time.time()), call.model, kind)
    if call.body.get("stream"):
        return await send_stream(call, wire.chat_chunks(head, choices, usage, call.streams_usage))
    return await send_json(call, wire.chat_completion(head, choices, None if call.fault == "no-usage" else usage))


async def completions(call: Call) -> web.StreamResponse:
    if (refusal := integer_refusal(call, "n", 1, MAX_CHOICES)) is not None:
        return refusal
    prompts = prompt_list(call.body["prompt"], call.model)
    budget = call.body.get("max_tokens") or LEGACY_DEFAULT_MAX_TOKENS
    n = call.body.get("n") or 1
    choices = [c for text, _ in prompts for c in call.replies(text, concise=False, shape=TEXT, budget=budget, n=n)]
    counts = call.counts(sum(tokens for _, tokens in prompts), choices)
    usage = wire.chat_usage(counts, call.knobs.anthropic_usage)
    head = wire.object_head(call.object_id("cmpl-"), int(time.time()), call.model, "text_completion")
    if call.body.get("stream"):
        return await send_stream(call, wire.completion_chunks(head, choices, usage, call.streams_usage))
    return await send_json(call, wire.text_completion(head, choices, None if call.fault == "no-usage" else usage))


async def embeddings(call: Call) -> web.StreamResponse:
    dimensions = call.body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool)
                                   or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS):
        body = wire.error_body(f"Invalid 'dimensions': expected an integer from 1 to {MAX_EMBEDDING_DIMENSIONS}.",
                               "invalid_request_error", "dimensions", "invalid_value")
        return error_response(call, 400, body)
    if dimensions and call.model == "text-embedding-ada-002":
        body = wire.error_body("This model does not support specifying dimensions.", "invalid_request_error")
        return error_response(call, 400, body)
    size = dimensions or EMBEDDING_DIMENSIONS.get(call.model, DEFAULT_EMBEDDING_DIMENSIONS)
    encoding_format = call.body.get("encoding_format") or "float"
    inputs = prompt_list(call.body["input"], call.model)
    vectors = [encoded_embedding(unit_vector(call.state.seed, text, size), encoding_format) for text, _ in inputs]
    return await send_json(call, wire.embedding_list(vectors, call.model, sum(tokens for _, tokens in inputs)))


def responses_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Instructions and input as the messages the model reads: instructions count as a developer message."""
    instructions = [{"role": "developer", "content": body["instructions"]}] if body.get("instructions") else []
    given = body.get("input")
    return instructions + ([{"role": "user", "content": given}] if isinstance(given, str) else list(given or []))


async def responses(call: Call) -> web.StreamResponse:
    messages = responses_messages(call.body)
    shape = json_shape((call.body.get("text") or {}).get("format"))
    budget = call.body.get("max_output_tokens")
    [choice] = call.replies(last_user_text(messages), concise=asks_concise(messages), shape=shape, budget=budget)
    counts = call.counts(chat_prompt_tokens(messages, call.model), [choice])
    reasoning = [wire.reasoning_item(call.object_id("rs_"))] if is_reasoning_model(call.model) else []
    output = [*reasoning, wire.message_item(call.object_id("msg_"), choice)]
    response_id, created = call.object_id("resp_"), int(time.time())
    final = wire.response_object(
        response_id=response_id, created=created, model=call.model, request=call.body, output=output
    )
    if choice.finish_reason == "length":
        final.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    if call.fault != "no-usage":
        final["usage"] = wire.responses_usage(counts, call.knobs.anthropic_usage)
    if call.body.get("stream"):
        return await send_stream(call, wire.response_events(final, choice))
    return await send_json(call, final)


async def list_models(call: Call) -> web.StreamResponse:
    return await send_json(call, {"object": "list", "data": [wire.model_object(m) for m in sorted(call.state.models)]})


async def retrieve_model(call: Call) -> web.StreamResponse:
    model = call.request.match_info["model"]
    if not is_known(call.state, model):
        return model_not_found(call, model)
    return await send_json(call, wire.model_object(model))
