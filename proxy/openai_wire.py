"""OpenAI's request bodies as pure functions: parsed, checked (the structures later stages walk), the few facts
the proxy relies on, and the features policies match on. Answers' usage is proxy/openai_usage.py; SSE events,
proxy/sse.py.

Nothing here does I/O; the pipeline feeds it bytes and gets facts back.
"""

import re
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.errors import BadRequest

STREAMABLE = frozenset({"chat", "completions", "responses"})
MAX_OUTPUT_FIELDS = {
    "chat": ("max_completion_tokens", "max_tokens"),
    "completions": ("max_tokens",),
    "responses": ("max_output_tokens",),
    "embeddings": (),
}

# The largest output limit a request may set (2**24 tokens: 100x the longest answer any model gives today).
# OpenAI and Anthropic refuse a limit past the model's own; past this one the proxy does too, before a budget
# holds it n times over and before the ledger stores it (orjson reads integers up to 2**64 - 1, and one past
# SQLite's 2**63 - 1 would fail every batch written after it).
MAX_OUTPUT_TOKENS = 1 << 24

# How many answers a request may ask for, within OpenAI's bounds: each is billed, so a budget holds the output
# limit for every one (n, or best_of generated server-side); past them it is OpenAI's 400, not a hold for a billion.
CHOICE_FIELDS = {"chat": (("n", 1, 128),), "completions": (("n", 1, 128), ("best_of", 0, 20))}

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
    _check_choices(endpoint, body)
    return RequestFacts(model, stream, bool(include_usage), _max_output(endpoint, body))


def choices(endpoint: str, body: dict[str, Any]) -> int:
    """How many answers the request is billed for (its fields checked by request_facts)."""
    most = 1
    for field, _, _ in CHOICE_FIELDS.get(endpoint, ()):
        most = max(most, body.get(field) or 1)
    return most


def _check_choices(endpoint: str, body: dict[str, Any]) -> None:
    for field, low, high in CHOICE_FIELDS.get(endpoint, ()):
        value = body.get(field)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid(field, "an integer")
        if value > high:
            raise _above_maximum(field, high, value)
        if value < low:
            raise BadRequest(f"Invalid '{field}': integer below minimum value. Expected a value >= {low}, but got "
                             f"{value} instead.", param=field, code="integer_below_min_value")


def _above_maximum(field: str, high: int, value: int) -> BadRequest:
    return BadRequest(f"Invalid '{field}': integer above maximum value. Expected a value <= {high}, but got {value} "
                      "instead.", param=field, code="integer_above_max_value")


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
        if value > MAX_OUTPUT_TOKENS:
            raise _above_maximum(field, MAX_OUTPUT_TOKENS, value)
        found = value if found is None else max(found, value)
    return found


def ask_for_stream_usage(body: dict[str, Any]) -> None:
    """Chat and completions streams report usage only when asked; the proxy always asks."""
    options = body.get("stream_options") or {}
    body["stream_options"] = {**options, "include_usage": True}



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
