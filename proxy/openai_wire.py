"""OpenAI's wire format as pure functions: request bodies, usage objects, SSE events.

Nothing here does I/O; the pipeline feeds it bytes and gets facts back.
"""

import re
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.errors import BadRequest
from proxy.accounting.usage import Usage

STREAMABLE = frozenset({"chat", "completions", "responses"})
MAX_OUTPUT_FIELDS = {
    "chat": ("max_completion_tokens", "max_tokens"),
    "completions": ("max_tokens",),
    "responses": ("max_output_tokens",),
    "embeddings": (),
}

DONE = b"[DONE]"
MAX_MODEL_LENGTH = 256
MAX_NESTING = 254  # what orjson writes
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NOT_HEADER_SAFE = re.compile(r"[^\x20-\x7e]")


def model_name_problem(model: str) -> str | None:
    """What is wrong with a model name any dialect accepts (it is echoed in a response header), or None."""
    if len(model) > MAX_MODEL_LENGTH or _CONTROL.search(model):
        return (f"'model' must be at most {MAX_MODEL_LENGTH} characters without control characters "
                "(it names a model, and is echoed in a response header)")
    return None


def header_value(text: str) -> str:
    """Client input echoed in a response header: anything but printable ASCII percent-encoded (UTF-8)."""
    if _NOT_HEADER_SAFE.search(text) is None:
        return text
    return _NOT_HEADER_SAFE.sub(lambda found: "".join(f"%{byte:02X}" for byte in found[0].encode()), text)


def parse_body(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise BadRequest("The request body is empty; expected a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"We could not parse the JSON body of your request: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"The request body must be a JSON object, got {type(body).__name__}.")
    # orjson reads up to 1024 levels but writes only 254: a body edited or hashed must be writable. Only a
    # body with that many brackets can nest that deep; only such a body pays for the check.
    if raw.count(b"[") + raw.count(b"{") > MAX_NESTING:
        try:
            orjson.dumps(body)
        except orjson.JSONEncodeError:
            raise BadRequest(f"The JSON body nests deeper than {MAX_NESTING} levels.",
                             code="too_deeply_nested") from None
    return body


@dataclass(slots=True, frozen=True)
class RequestFacts:
    model: str
    stream: bool
    include_usage: bool  # the client asked for the usage chunk itself
    max_output_tokens: int | None


def request_facts(endpoint: str, body: dict[str, Any]) -> RequestFacts:
    """Check the few fields the proxy relies on; the upstream validates the rest."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", param="model", code="missing_model")
    if problem := model_name_problem(model):
        raise BadRequest(problem, param="model", code="invalid_model")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", param="stream")
    if stream and endpoint not in STREAMABLE:
        raise BadRequest(f"streaming is not supported on the {endpoint} endpoint", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("'stream_options' must be an object", param="stream_options")
    include_usage = options.get("include_usage") if options else None
    if not isinstance(include_usage, bool | None):  # "false" is truthy: which way it went would be a guess
        raise _invalid("stream_options.include_usage", "a boolean")
    if endpoint == "responses" and body.get("background") not in (None, False):
        raise BadRequest("Background responses are not supported: their usage arrives after this answer, when the "
                         "response is retrieved, so thriftgate could neither price it nor count it against a budget.",
                         param="background", code="unsupported_parameter")
    _check_shape(endpoint, body)
    return RequestFacts(model, stream, bool(include_usage), _max_output(endpoint, body))


def _check_shape(endpoint: str, body: dict[str, Any]) -> None:
    """The structures that counting, matching and lookups walk, checked once, as OpenAI checks them: past
    here every stage may take messages and items for objects and their content for text or parts."""
    if endpoint == "chat":
        messages = body.get("messages")
        if messages is not None:
            _check_list_of_objects(messages, "messages", _check_message)
        for field in ("tools", "functions"):
            if body.get(field) is not None:
                _check_list_of_objects(body[field], field, _no_check)
    elif endpoint == "responses":
        given = body.get("input")
        if given is not None and not isinstance(given, str):
            _check_list_of_objects(given, "input", _check_message, expected="a string or an array of items")
        if not isinstance(body.get("instructions"), str | None):
            raise _invalid("instructions", "a string")
    else:
        field = "prompt" if endpoint == "completions" else "input"
        _check_token_input(body.get(field), field)


def _check_list_of_objects(value: Any, field: str, check_each, expected: str = "an array of objects") -> None:
    if not isinstance(value, list):
        raise _invalid(field, expected)
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise _invalid(f"{field}[{index}]", "an object")
        check_each(item, f"{field}[{index}]")


def _check_message(message: dict[str, Any], field: str) -> None:
    for name in ("content", "output"):  # a message's content; a Responses tool output
        content = message.get(name)
        if content is not None and not isinstance(content, str):
            _check_list_of_objects(content, f"{field}.{name}", _no_check, expected="a string or an array of parts")
    if message.get("tool_calls") is not None:
        _check_list_of_objects(message["tool_calls"], f"{field}.tool_calls", _no_check)
    if not isinstance(message.get("role"), str | None):
        raise _invalid(f"{field}.role", "a string")


def _no_check(item: dict[str, Any], field: str) -> None:
    return None


def _check_token_input(value: Any, field: str) -> None:
    """A completions prompt or embeddings input: a string, or an array of strings, token ids or token arrays."""
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list):
        raise _invalid(field, "a string or an array")
    for index, element in enumerate(value):
        if not isinstance(element, str | list) and not (isinstance(element, int) and not isinstance(element, bool)):
            raise _invalid(f"{field}[{index}]", "a string, a token id or an array of token ids")


def _invalid(param: str, expected: str) -> BadRequest:
    return BadRequest(f"Invalid type for '{param}': expected {expected}.", param=param, code="invalid_type")


def _max_output(endpoint: str, body: dict[str, Any]) -> int | None:
    """The output limit; of chat's two fields, the larger when both are set, whichever the upstream honours."""
    found = None
    for field in MAX_OUTPUT_FIELDS[endpoint]:
        value = body.get(field)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadRequest(f"'{field}' must be a positive integer", param=field)
        found = value if found is None else max(found, value)
    return found


def ask_for_stream_usage(body: dict[str, Any]) -> None:
    """Chat and completions streams report usage only when asked; the proxy always asks."""
    options = body.get("stream_options") or {}
    body["stream_options"] = {**options, "include_usage": True}


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


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


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


# ---- Server-sent events ----


def split_events(buffer: bytes) -> tuple[list[bytes], int]:
    """Complete SSE events in `buffer` (each with its blank-line terminator) and the bytes used."""
    events = []
    start = 0
    # OpenAI ends events with LF LF; the SSE spec also allows CRLF CRLF. A terminator is searched for again
    # only once passed: searching the rest of the buffer for a CRLF CRLF at every event (OpenAI never sends
    # one) made a buffer of many events quadratic.
    lf = buffer.find(b"\n\n")
    crlf = buffer.find(b"\r\n\r\n")
    while lf >= 0 or crlf >= 0:
        end = crlf + 4 if crlf >= 0 and (lf < 0 or crlf < lf) else lf + 2
        events.append(buffer[start:end])
        start = end
        if 0 <= lf < start:
            lf = buffer.find(b"\n\n", start)
        if 0 <= crlf < start:
            crlf = buffer.find(b"\r\n\r\n", start)
    return events, start


def complete_events_end(buffer: bytes) -> int:
    """Where the last complete event in `buffer` ends (0 when there is none yet)."""
    lf = buffer.rfind(b"\n\n")
    crlf = buffer.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def event_end(buffer: bytes, start: int) -> int:
    """Where the event that begins at `start` ends, its blank line included (the buffer holds it whole)."""
    lf = buffer.find(b"\n\n", start)
    crlf = buffer.find(b"\r\n\r\n", start, lf + 2 if lf >= 0 else len(buffer))
    return crlf + 4 if crlf >= 0 else lf + 2


def event_data(event: bytes) -> bytes | None:
    """The payload of an event's `data:` line(s), or None for comments and keep-alives."""
    data = None
    for line in event.splitlines():
        if line.startswith(b"data:"):
            chunk = line[5:].strip()
            data = chunk if data is None else data + b"\n" + chunk
    return data


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


def sse_event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


# ---- Request features that policies match on ----


def has_tools(endpoint: str, body: dict[str, Any]) -> bool:
    return bool(body.get("tools") or body.get("functions"))


def has_response_format(endpoint: str, body: dict[str, Any]) -> bool:
    if endpoint == "responses":
        text = body.get("text")
        return isinstance(text, dict) and bool(text.get("format"))
    return bool(body.get("response_format"))


def has_images(endpoint: str, body: dict[str, Any]) -> bool:
    return any(
        isinstance(part, dict) and part.get("type") in ("image_url", "input_image")
        for message in _messages(endpoint, body)
        for part in _parts(message)
    )


def last_user_text(endpoint: str, body: dict[str, Any]) -> str:
    """The text of the last user message (the prompt, for legacy completions)."""
    if endpoint == "completions":
        prompt = body.get("prompt")
        return prompt if isinstance(prompt, str) else ""
    if endpoint == "responses" and isinstance(body.get("input"), str):
        return body["input"]
    for message in reversed(_messages(endpoint, body)):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in _parts(message) if isinstance(p.get("text"), str))
    return ""


def _messages(endpoint: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("input") if endpoint == "responses" else body.get("messages")
    return [m for m in items if isinstance(m, dict)] if isinstance(items, list) else []


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []
