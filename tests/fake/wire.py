"""OpenAI's wire objects, field for field: completions, chunks, responses and their events, usage, errors."""

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from tests.fake.content import Generated

DONE = b"data: [DONE]\n\n"

# The API answers with the dated snapshot an alias points at; a proxy that prices by the answer's model
# has to map these back, so the fake names them as OpenAI does.
SNAPSHOTS = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-5": "gpt-5-2025-08-07",
    "o3-mini": "o3-mini-2025-01-31",
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "gpt-4": "gpt-4-0613",
}


def snapshot_of(model: str) -> str:
    return SNAPSHOTS.get(model, model)


def fingerprint_of(model: str) -> str:
    return "fp_" + hashlib.sha1(model.encode()).hexdigest()[:10]


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_event(name: str, payload: dict[str, Any]) -> bytes:
    """The Responses API names every event twice: in an `event:` line and in the payload's `type`."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


# ---- errors -------------------------------------------------------------------------------------------


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


# ---- usage --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counts:
    """Token counts of one request; cached and cache_write are parts of prompt, reasoning a part of completion."""

    prompt: int
    completion: int
    reasoning: int = 0
    cached: int = 0
    cache_write: int = 0

    @classmethod
    def of(cls, prompt: int, choices: list[Generated], cached: int, cache_write: int) -> "Counts":
        cached = min(cached, prompt)
        return cls(
            prompt=prompt,
            completion=sum(c.completion_tokens for c in choices),
            reasoning=sum(c.reasoning_tokens for c in choices),
            cached=cached,
            cache_write=min(cache_write, prompt - cached),
        )


def anthropic_usage(counts: Counts) -> dict[str, int]:
    """Anthropic's way, as some gateways pass it through: input_tokens leaves out cache reads and writes."""
    return {
        "input_tokens": counts.prompt - counts.cached - counts.cache_write,
        "output_tokens": counts.completion,
        "cache_creation_input_tokens": counts.cache_write,
        "cache_read_input_tokens": counts.cached,
    }


def chat_usage(counts: Counts, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return anthropic_usage(counts)
    prompt_details: dict[str, int] = {"cached_tokens": counts.cached, "audio_tokens": 0}
    if counts.cache_write:
        prompt_details["cache_write_tokens"] = counts.cache_write
    return {
        "prompt_tokens": counts.prompt,
        "completion_tokens": counts.completion,
        "total_tokens": counts.prompt + counts.completion,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {
            "reasoning_tokens": counts.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def responses_usage(counts: Counts, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return anthropic_usage(counts)
    return {
        "input_tokens": counts.prompt,
        "input_tokens_details": {"cached_tokens": counts.cached, "cache_write_tokens": counts.cache_write},
        "output_tokens": counts.completion,
        "output_tokens_details": {"reasoning_tokens": counts.reasoning},
        "total_tokens": counts.prompt + counts.completion,
    }


# ---- chat completions ---------------------------------------------------------------------------------


def object_head(object_id: str, created: int, model: str, kind: str) -> dict[str, Any]:
    """The fields every completion and chunk opens with; the legacy endpoint's predate service tiers."""
    tier = {} if kind == "text_completion" else {"service_tier": "default"}
    return {
        "id": object_id,
        "object": kind,
        "created": created,
        "model": snapshot_of(model),
        **tier,
        "system_fingerprint": fingerprint_of(model),
    }


def tool_call(choice: Generated, arguments: str) -> dict[str, Any]:
    return {"id": choice.call_id, "type": "function", "function": {"name": choice.tool_name, "arguments": arguments}}


def chat_completion(head: dict[str, Any], choices: list[Generated], usage: dict[str, Any] | None) -> dict[str, Any]:
    def message(choice: Generated) -> dict[str, Any]:
        if choice.tool_name:
            said: dict[str, Any] = {"content": None, "tool_calls": [tool_call(choice, choice.text)]}
        else:
            said = {"content": choice.text}
        return {"role": "assistant", **said, "refusal": None, "annotations": []}

    body = {
        **head,
        "choices": [
            {"index": i, "message": message(c), "logprobs": None, "finish_reason": c.finish_reason}
            for i, c in enumerate(choices)
        ],
    }
    return body if usage is None else {**body, "usage": usage}


def interleaved(choices: list[Generated]) -> Iterator[tuple[int, Generated, str]]:
    """Pieces as a model with n choices streams them: one token of each choice in turn."""
    for step in range(max(len(c.pieces) for c in choices)):
        for index, choice in enumerate(choices):
            if step < len(choice.pieces):
                yield index, choice, choice.pieces[step]


def chat_chunks(
    head: dict[str, Any], choices: list[Generated], usage: dict[str, Any] | None, include_usage: bool
) -> list[bytes]:
    """A role chunk, one chunk per token, an empty-delta chunk with finish_reason, the usage chunk, [DONE].

    With include_usage every chunk carries "usage": null until the last, whose choices are empty.
    """
    tail = {"usage": None} if include_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        entry = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse({**head, "choices": [entry], **tail})

    def opening(choice: Generated) -> dict[str, Any]:
        if choice.tool_name:
            said: dict[str, Any] = {"content": None, "tool_calls": [{"index": 0, **tool_call(choice, "")}]}
        else:
            said = {"content": ""}
        return {"role": "assistant", **said, "refusal": None}

    def delta(choice: Generated, piece: str) -> dict[str, Any]:
        if choice.tool_name:
            return {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
        return {"content": piece}

    events = [chunk(i, opening(c)) for i, c in enumerate(choices)]
    events += [chunk(i, delta(c, piece)) for i, c, piece in interleaved(choices)]
    events += [chunk(i, {}, c.finish_reason) for i, c in enumerate(choices)]
    if include_usage:
        events.append(sse({**head, "choices": [], "usage": usage}))
    return [*events, DONE]


# ---- legacy completions -------------------------------------------------------------------------------


def text_completion(head: dict[str, Any], choices: list[Generated], usage: dict[str, Any] | None) -> dict[str, Any]:
    body = {
        **head,
        "choices": [
            {"text": c.text, "index": i, "logprobs": None, "finish_reason": c.finish_reason}
            for i, c in enumerate(choices)
        ],
    }
    return body if usage is None else {**body, "usage": usage}


def completion_chunks(
    head: dict[str, Any], choices: list[Generated], usage: dict[str, Any] | None, include_usage: bool
) -> list[bytes]:
    tail = {"usage": None} if include_usage else {}

    def chunk(index: int, text: str, finish_reason: str | None = None) -> bytes:
        entry = {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}
        return sse({**head, "choices": [entry], **tail})

    events = [chunk(i, piece) for i, _, piece in interleaved(choices)]
    events += [chunk(i, "", c.finish_reason) for i, c in enumerate(choices)]
    if include_usage:
        events.append(sse({**head, "choices": [], "usage": usage}))
    return [*events, DONE]


# ---- responses ----------------------------------------------------------------------------------------


def response_object(
    *, response_id: str, created: int, model: str, request: dict[str, Any], output: list[dict[str, Any]]
) -> dict[str, Any]:
    """A finished response; status and usage are filled in by the caller. Request settings are echoed back."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "completed",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": snapshot_of(model),
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": (request.get("reasoning") or {}).get("effort"), "summary": None},
        "service_tier": "default",
        "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": request.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools", []),
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation", "disabled"),
        "usage": None,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def message_item(item_id: str, choice: Generated) -> dict[str, Any]:
    status = "incomplete" if choice.finish_reason == "length" else "completed"
    content = [output_text_part(choice.text)]
    return {"id": item_id, "type": "message", "status": status, "content": content, "role": "assistant"}


def reasoning_item(item_id: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": []}


def response_events(final: dict[str, Any], choice: Generated) -> list[bytes]:
    """created, in_progress, each output item opened and closed (text deltas inside the message), then
    completed, or incomplete when max_output_tokens cut the reply. No [DONE]: the last event ends it."""
    started = {**final, "status": "in_progress", "incomplete_details": None, "output": [], "usage": None}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": started}),
        ("response.in_progress", {"response": started}),
    ]
    for index, item in enumerate(final["output"]):
        opened = {**item, "status": "in_progress", "content": []} if item["type"] == "message" else item
        events.append(("response.output_item.added", {"output_index": index, "item": opened}))
        if item["type"] == "message":
            events += text_events(item["id"], index, choice)
        events.append(("response.output_item.done", {"output_index": index, "item": item}))
    events.append((f"response.{final['status']}", {"response": final}))
    return [sse_event(name, {"type": name, "sequence_number": n, **data}) for n, (name, data) in enumerate(events)]


def text_events(item_id: str, output_index: int, choice: Generated) -> list[tuple[str, dict[str, Any]]]:
    where = {"item_id": item_id, "output_index": output_index, "content_index": 0}
    return [
        ("response.content_part.added", {**where, "part": output_text_part("")}),
        *(("response.output_text.delta", {**where, "delta": piece, "logprobs": []}) for piece in choice.pieces),
        ("response.output_text.done", {**where, "text": choice.text, "logprobs": []}),
        ("response.content_part.done", {**where, "part": output_text_part(choice.text)}),
    ]


# ---- embeddings and models ----------------------------------------------------------------------------


def embedding_list(vectors: list[Any], model: str, prompt_tokens: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def model_object(model: str) -> dict[str, Any]:
    owner = model.split(":")[2] if model.startswith("ft:") else "system"  # ft:base:org::id belongs to org
    created = int.from_bytes(hashlib.sha1(model.encode()).digest()[:2]) * 1000 + 1_680_000_000
    return {"id": model, "object": "model", "created": created, "owned_by": owner}
