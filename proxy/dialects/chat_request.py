"""An OpenAI chat request as an Anthropic Messages body (an OpenAI client served by Claude).

Every field either maps onto the Messages API or is refused with a 400 naming it; nothing that
changes the answer is dropped. Mapped: system and developer messages (leading ones) -> `system`;
user, assistant and tool messages -> turns of content blocks (consecutive turns of one role merge);
text, images (data URLs and https URLs), PDF files; tool calls
and tool results; `tools`/`functions`, `tool_choice`/`function_call`, `parallel_tool_calls`;
`response_format` json_schema -> `output_config.format`; `reasoning_effort` -> `output_config.effort`;
`stop` -> `stop_sequences`; `max_completion_tokens`/`max_tokens` -> `max_tokens` (the upstream's
default_max_tokens when unset: Anthropic requires one); `user`/`safety_identifier` ->
`metadata.user_id`; `temperature` and `top_p` only where the upstream's API version still has them
(2023-06-01: version 2026-10-21 refuses every sampling parameter). A `cache_control` on a content
part or tool (the convention of other gateways) is carried over.

Accepted and not sent, because they change nothing in the answer: `stream_options` (the proxy reads
usage itself), `prompt_cache_key` (Anthropic caches by prefix), an image's `detail`, and parameters
left at their default (n 1, penalties 0, logprobs false, store false, modalities ["text"]).
"""

from typing import Any

import orjson

from proxy.errors import BadRequest

_SAMPLING_VERSION = "2023-06-01"  # the last API version with temperature and top_p
_EFFORTS = ("low", "medium", "high", "xhigh")
# Fields that are harmless at these values and untranslatable at any other.
_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "n": (None, 1), "presence_penalty": (None, 0), "frequency_penalty": (None, 0), "logprobs": (None, False),
    "top_logprobs": (None, 0), "logit_bias": (None, {}), "seed": (None,), "store": (None, False),
    "metadata": (None, {}), "modalities": (None, ["text"]), "audio": (None,), "prediction": (None,),
    "web_search_options": (None,), "service_tier": (None, "auto", "default"), "verbosity": (None, "medium"),
    "prompt_cache_retention": (None,),
}
_HANDLED = frozenset({
    "model", "messages", "max_completion_tokens", "max_tokens", "stream", "stream_options", "stop", "temperature",
    "top_p", "tools", "functions", "tool_choice", "function_call", "parallel_tool_calls", "response_format", "user",
    "safety_identifier", "reasoning_effort", "prompt_cache_key", *_DEFAULTS,
})


def messages_body(chat: dict[str, Any], *, default_max_tokens: int, api_version: str, upstream: str) -> dict[str, Any]:
    for field in chat:
        if field not in _HANDLED:
            raise _untranslatable(field, upstream)
    for field, allowed in _DEFAULTS.items():
        if chat.get(field) not in allowed:
            raise _untranslatable(field, upstream, f"only {_shown(allowed)} can be sent to it")
    system, messages = _turns(chat.get("messages"))
    body: dict[str, Any] = {"model": chat["model"], "messages": messages}
    if system:
        body["system"] = system
    body["max_tokens"] = chat.get("max_completion_tokens") or chat.get("max_tokens") or default_max_tokens
    if chat.get("stream"):
        body["stream"] = True
    if (stop := chat.get("stop")) is not None:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    _sampling(chat, body, api_version, upstream)
    _tools(chat, body)
    output_config = _output_config(chat)
    if output_config:
        body["output_config"] = output_config
    user = chat.get("user") or chat.get("safety_identifier")
    if user:
        body["metadata"] = {"user_id": user}
    return body


def _shown(values: tuple[Any, ...]) -> str:
    return " or ".join(orjson.dumps(v).decode() for v in values if v is not None) or "nothing"


def _untranslatable(field: str, upstream: str, why: str = "") -> BadRequest:
    reason = f": {why}" if why else " (it has no counterpart in Anthropic's Messages API)"
    return BadRequest(f"'{field}' cannot be sent to the Anthropic upstream '{upstream}'{reason}.", param=field,
                      code="untranslatable_parameter")


def _invalid(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", param=field, code="untranslatable_parameter")


# ---- messages ----


def _turns(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "expected a non-empty list of messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        field = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _invalid(field, "expected an object")
        if message.get("name"):
            raise _invalid(f"{field}.name", "participant names have no counterpart in Anthropic's Messages API")
        role = message.get("role")
        if role in ("system", "developer"):
            if turns:
                raise _invalid(f"{field}.role", f"a {role} message after the first turn has no counterpart in "
                                                "Anthropic's Messages API, whose system prompt comes first")
            system.extend(_parts(message.get("content"), f"{field}.content", role))
        elif role == "user":
            _append(turns, "user", _parts(message.get("content"), f"{field}.content", role))
        elif role == "assistant":
            _append(turns, "assistant", _assistant(message, field))
        elif role == "tool":
            _append(turns, "user", [_tool_result(message, field)])
        else:
            raise _invalid(f"{field}.role", f"the role {role!r} cannot be translated (tool results need a tool message)")
    return system, turns


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)  # tool messages answering one turn's calls become one user turn
    else:
        turns.append({"role": role, "content": blocks})


def _parts(content: Any, field: str, role: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise _invalid(field, "expected a string or a list of content parts")
    blocks = []
    for j, part in enumerate(content):
        block = _part(part, f"{field}[{j}]", role)
        if block is not None:
            if isinstance(part, dict) and isinstance(part.get("cache_control"), dict):
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
    return blocks


def _part(part: Any, field: str, role: str) -> dict[str, Any] | None:
    if not isinstance(part, dict):
        raise _invalid(field, "expected an object")
    kind = part.get("type")
    if kind in ("text", "refusal"):
        text = part.get(kind)
        return {"type": "text", "text": text} if isinstance(text, str) and text else None
    if kind == "image_url" and role == "user":
        url = part.get("image_url")
        url = url.get("url") if isinstance(url, dict) else url
        return {"type": "image", "source": _source(url, f"{field}.image_url.url")}
    if kind == "file" and role == "user":
        data = (part.get("file") or {}).get("file_data")
        if not isinstance(data, str):
            raise _invalid(f"{field}.file", "only inline file_data can be sent to Anthropic (a file_id is OpenAI's)")
        return {"type": "document", "source": _source(data, f"{field}.file.file_data")}
    raise _invalid(f"{field}.type", f"a {kind!r} part in a {role} message cannot be translated for Anthropic")


def _source(url: Any, field: str) -> dict[str, Any]:
    if isinstance(url, str) and url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].removesuffix(";base64")
        if not header.endswith(";base64") or not data:
            raise _invalid(field, "expected a base64 data URL")
        return {"type": "base64", "media_type": media_type, "data": data}
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    raise _invalid(field, "expected a data URL or an http(s) URL")


def _assistant(message: dict[str, Any], field: str) -> list[dict[str, Any]]:
    for unsupported in ("audio", "function_call"):
        if message.get(unsupported):
            raise _invalid(f"{field}.{unsupported}", "has no counterpart in Anthropic's Messages API")
    blocks = _parts(message.get("content"), f"{field}.content", "assistant")
    if not blocks and isinstance(message.get("refusal"), str) and message["refusal"]:
        blocks.append({"type": "text", "text": message["refusal"]})
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _invalid(f"{field}.tool_calls", "expected a list")
    for k, call in enumerate(calls):
        where = f"{field}.tool_calls[{k}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or call.get("type", "function") != "function":
            raise _invalid(where, "only function tool calls can be translated")
        arguments = function.get("arguments") or "{}"
        try:
            tool_input = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            tool_input = None
        if not isinstance(tool_input, dict):
            raise _invalid(f"{where}.function.arguments", "Anthropic needs the arguments as a JSON object")
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": tool_input})
    return blocks


def _tool_result(message: dict[str, Any], field: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _invalid(f"{field}.tool_call_id", "a tool message needs the id of the call it answers")
    content = message.get("content")
    blocks = content if isinstance(content, str) else _parts(content, f"{field}.content", "tool")
    return {"type": "tool_result", "tool_use_id": call_id, "content": blocks}


# ---- parameters ----


def _sampling(chat: dict[str, Any], body: dict[str, Any], api_version: str, upstream: str) -> None:
    for field, ceiling in (("temperature", 1), ("top_p", 1)):
        value = chat.get(field)
        if value is None:
            continue
        if api_version != _SAMPLING_VERSION:
            raise _untranslatable(field, upstream, f"its API version {api_version} has no sampling parameters "
                                                   f"(set the upstream's anthropic_version to {_SAMPLING_VERSION})")
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= ceiling:
            raise _invalid(field, f"Anthropic accepts 0 to {ceiling}")
        body[field] = value


def _tools(chat: dict[str, Any], body: dict[str, Any]) -> None:
    tools = [*(chat.get("tools") or []), *({"type": "function", "function": f} for f in chat.get("functions") or [])]
    if tools:
        body["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    choice = chat.get("tool_choice", chat.get("function_call"))
    if isinstance(choice, dict) and "name" in choice:  # the legacy function_call {"name": ...}
        choice = {"type": "function", "function": choice}
    translated = _tool_choice(choice)
    if chat.get("parallel_tool_calls") is False and tools:
        translated = translated or {"type": "auto"}
        if translated["type"] != "none":
            translated["disable_parallel_tool_use"] = True
    if translated is not None:
        body["tool_choice"] = translated


def _tool(tool: Any, field: str) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise _invalid(field, "only function tools with a name can be translated for Anthropic")
    translated: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        translated["description"] = function["description"]
    translated["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    if function.get("strict"):
        translated["strict"] = True
    if isinstance(tool.get("cache_control"), dict):
        translated["cache_control"] = tool["cache_control"]
    return translated


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    simple = {"auto": "auto", "none": "none", "required": "any"}
    if isinstance(choice, str) and choice in simple:
        return {"type": simple[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise _invalid("tool_choice", "expected auto, none, required or a function by name")


def _output_config(chat: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    response_format = chat.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else response_format
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise _invalid("response_format.json_schema.schema", "expected a JSON schema object")
        config["format"] = {"type": "json_schema", "schema": schema}
    elif kind not in (None, "text"):
        raise _invalid("response_format", f"{kind!r} has no Anthropic counterpart; json_schema has one")
    effort = chat.get("reasoning_effort")
    if effort is not None:
        if effort not in _EFFORTS:
            raise _invalid("reasoning_effort", f"Anthropic's efforts are {', '.join(_EFFORTS)}")
        config["effort"] = effort
    return config
