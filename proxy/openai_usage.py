"""What an answer used, in OpenAI's wire format (and Anthropic's Messages usage, which shares its fields):
the usage object of a whole answer or of a stream chunk, else the generated text, to count when usage is
missing. Pure functions over parsed JSON.
"""

from typing import Any

from proxy.accounting.usage import Usage


def usage_from(obj: Any) -> Usage | None:
    """Normalise any usage object (chat, completions, embeddings, responses, Anthropic's Messages)."""
    if not isinstance(obj, dict):
        return None
    prompt = _int(obj.get("prompt_tokens", obj.get("input_tokens")))
    completion = _int(obj.get("completion_tokens", obj.get("output_tokens")))
    prompt_details = _dict(obj.get("prompt_tokens_details") or obj.get("input_tokens_details"))
    output_details = _dict(obj.get("completion_tokens_details") or obj.get("output_tokens_details"))
    cached = _int(prompt_details.get("cached_tokens"))
    written = _int(prompt_details.get("cache_write_tokens"))
    # Anthropic's thinking, OpenAI's reasoning: hidden output, billed as output.
    reasoning = _int(output_details.get("reasoning_tokens", output_details.get("thinking_tokens")))
    # Anthropic counts cache reads and writes apart from input tokens: fold them in.
    cache_read = _int(obj.get("cache_read_input_tokens"))
    cache_write = _int(obj.get("cache_creation_input_tokens"))
    written_1h = _int(_dict(obj.get("cache_creation")).get("ephemeral_1h_input_tokens"))
    return Usage(
        prompt_tokens=prompt + cache_read + cache_write,
        completion_tokens=completion,
        cached_prompt_tokens=cached + cache_read,
        cache_write_tokens=written + cache_write,
        cache_write_1h_tokens=written_1h,
        reasoning_tokens=reasoning,
    )


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


# No request uses 4 billion tokens (a model's context is millions at most): a larger count is a broken upstream's
# (JSON integers go up to 2**64 - 1). It counts as this many, so that the request's cost stays below 2**53
# nano-dollars at any price listed today, and its ledger row, budget settle and fleet totals within 64 bits: a
# field past SQLite's or PostgreSQL's bigint failed every ledger batch after it.
MAX_REPORTED_TOKENS = 1 << 32


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return min(value, MAX_REPORTED_TOKENS)
    return 0


def usage_of_response(endpoint: str, obj: Any) -> Usage | None:
    if not isinstance(obj, dict):
        return None
    return usage_from(obj.get("usage"))


def output_text_of_response(endpoint: str, obj: Any) -> str:
    """The generated text of a non-streamed answer (to count it when usage is missing)."""
    if not isinstance(obj, dict):
        return ""
    if endpoint == "responses":
        return "".join(
            part.get("text", "")
            for item in obj.get("output") or ()
            if isinstance(item, dict)
            for part in item.get("content") or ()
            if isinstance(part, dict)
        )
    return _choices_text(obj.get("choices"), "message")


def _choices_text(choices: Any, field: str) -> str:
    """The text of chat choices (their `message`, or a stream's `delta`) or of legacy completions (`text`)."""
    parts = []
    for choice in choices or ():
        if not isinstance(choice, dict):
            continue
        said = choice.get(field)
        if isinstance(said, dict):
            parts.append(said.get("content") or "")
            parts.extend(_tool_call_text(said.get("tool_calls")))
        else:
            parts.append(choice.get("text") or "")
    return "".join(p for p in parts if isinstance(p, str))


def _tool_call_text(tool_calls: Any) -> list[str]:
    texts = []
    for call in tool_calls or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            texts.append(function.get("name") or "")
            texts.append(function.get("arguments") or "")
    return texts



def stream_delta_text(endpoint: str, chunk: dict[str, Any]) -> str:
    """Generated text carried by one parsed stream chunk (for counting a stream without usage)."""
    if endpoint == "responses":
        delta = chunk.get("delta") if chunk.get("type") == "response.output_text.delta" else None
        return delta if isinstance(delta, str) else ""
    return _choices_text(chunk.get("choices"), "delta")


def stream_chunk_usage(endpoint: str, chunk: dict[str, Any]) -> Usage | None:
    if endpoint == "responses":
        response = chunk.get("response")
        return usage_from(response.get("usage")) if isinstance(response, dict) else None
    return usage_from(chunk.get("usage"))


def is_usage_only_chunk(chunk: dict[str, Any]) -> bool:
    """The extra chunk that include_usage adds: no choices, a usage object."""
    return not chunk.get("choices") and isinstance(chunk.get("usage"), dict)
