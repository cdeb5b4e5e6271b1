"""An Anthropic Messages request as an OpenAI chat body (an Anthropic client served by an OpenAI model).

Mapped: `system` -> a leading system message; turns of content blocks -> chat messages (text,
images as data or https URLs, PDF documents as files, tool_use -> the assistant's tool_calls,
tool_result -> tool messages, which come before the rest of their user turn); `tools` (custom tools
with an input_schema) -> function tools; `tool_choice` (auto, any, tool, none;
disable_parallel_tool_use -> parallel_tool_calls false); `stop_sequences` -> `stop` (at most 4, as
OpenAI allows); `max_tokens` -> `max_completion_tokens`; `temperature`, `top_p`;
`metadata.user_id` -> `user`; `output_config.format` -> `response_format` json_schema and
`output_config.effort` -> `reasoning_effort`; `stream` (usage always asked for).

Dropped, because they change nothing in an OpenAI answer: `cache_control` (OpenAI caches prompts by
itself) and the thinking blocks of earlier assistant turns (the reasoning behind an answer already
given, which OpenAI neither takes nor needs). Everything else, `thinking` itself and server tools
included, is a 400 naming the field.
"""

from typing import Any

import orjson

from proxy.errors import BadRequest

_MAX_STOP = 4
_EFFORTS = ("low", "medium", "high", "xhigh")
_HANDLED = frozenset({"model", "messages", "system", "max_tokens", "stream", "stop_sequences", "temperature", "top_p",
                      "tools", "tool_choice", "metadata", "output_config", "thinking", "cache_control"})


def chat_body(messages: dict[str, Any], *, upstream: str) -> dict[str, Any]:
    for field in messages:
        if field not in _HANDLED:
            raise _untranslatable(field, upstream)
    thinking = messages.get("thinking")
    if thinking is not None and (not isinstance(thinking, dict) or thinking.get("type") != "disabled"):
        raise _untranslatable("thinking", upstream, "OpenAI models reason by themselves; use output_config.effort")
    chat: dict[str, Any] = {"model": messages["model"], "messages": _messages(messages)}
    chat["max_completion_tokens"] = messages["max_tokens"]
    if messages.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    stop = messages.get("stop_sequences")
    if stop:
        if not isinstance(stop, list) or len(stop) > _MAX_STOP:
            raise _invalid("stop_sequences", f"OpenAI takes at most {_MAX_STOP} stop sequences")
        chat["stop"] = stop
    for field in ("temperature", "top_p"):
        if messages.get(field) is not None:
            chat[field] = messages[field]
    _tools(messages, chat, upstream)
    _output(messages.get("output_config"), chat)
    user = (messages.get("metadata") or {}).get("user_id")
    if user:
        chat["user"] = user
    return chat


def _untranslatable(field: str, upstream: str, why: str = "") -> BadRequest:
    reason = f": {why}" if why else " (it has no counterpart in OpenAI's chat completions)"
    return BadRequest(f"{field}: cannot be sent to the OpenAI upstream '{upstream}'{reason}.", param=field)


def _invalid(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", param=field)


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    chat: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        chat.append({"role": "system", "content": _text(system, "system")})
    for i, message in enumerate(body["messages"]):
        field = f"messages.{i}.content"
        content = message["content"]
        if message["role"] == "assistant":
            chat.append(_assistant(content, field))
            continue
        if isinstance(content, str):
            chat.append({"role": "user", "content": content})
            continue
        chat.extend(_tool_message(block, f"{field}.{j}") for j, block in enumerate(content)
                    if block["type"] == "tool_result")
        parts = [_part(block, f"{field}.{j}") for j, block in enumerate(content) if block["type"] != "tool_result"]
        if parts:
            chat.append({"role": "user", "content": parts})
    return chat


def _text(content: Any, field: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for j, block in enumerate(content):
        if block["type"] != "text":
            raise _invalid(f"{field}.{j}.type", f"only text can be sent to OpenAI here, not {block['type']!r}")
        texts.append(block.get("text") or "")
    return "\n\n".join(texts)


def _part(block: dict[str, Any], field: str) -> dict[str, Any]:
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": block.get("text") or ""}
    if kind in ("image", "document"):
        source = block.get("source") or {}
        if source.get("type") == "base64":
            url = f"data:{source.get('media_type')};base64,{source.get('data')}"
        elif source.get("type") == "url" and kind == "image":
            url = source.get("url")
        else:
            raise _invalid(f"{field}.source", f"a {source.get('type')!r} {kind} source cannot be sent to OpenAI")
        if kind == "image":
            return {"type": "image_url", "image_url": {"url": url}}
        return {"type": "file", "file": {"filename": block.get("title") or "document.pdf", "file_data": url}}
    raise _invalid(f"{field}.type", f"a {kind!r} block cannot be sent to OpenAI")


def _assistant(content: Any, field: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts, calls = [], []
    for j, block in enumerate(content):
        kind = block["type"]
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        elif kind not in ("thinking", "redacted_thinking"):
            raise _invalid(f"{field}.{j}.type", f"a {kind!r} block cannot be sent to OpenAI")
    said: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        said["tool_calls"] = calls
    return said


def _tool_message(block: dict[str, Any], field: str) -> dict[str, Any]:
    content = block.get("content")
    text = _text(content, f"{field}.content") if content is not None else ""
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}


def _tools(body: dict[str, Any], chat: dict[str, Any], upstream: str) -> None:
    tools = body.get("tools") or []
    translated = []
    for i, tool in enumerate(tools):
        if "input_schema" not in tool:
            raise _untranslatable(f"tools.{i}", upstream, f"the server tool {tool.get('type')!r} is Anthropic's own")
        function = {"name": tool.get("name"), "parameters": tool["input_schema"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        if tool.get("strict"):
            function["strict"] = True
        translated.append({"type": "function", "function": function})
    if translated:
        chat["tools"] = translated
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return
    kinds = {"auto": "auto", "any": "required", "none": "none"}
    if choice.get("type") in kinds:
        chat["tool_choice"] = kinds[choice["type"]]
    elif choice.get("type") == "tool":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    else:
        raise _invalid("tool_choice.type", "expected auto, any, tool or none")
    if choice.get("disable_parallel_tool_use"):
        chat["parallel_tool_calls"] = False


def _output(config: Any, chat: dict[str, Any]) -> None:
    if not isinstance(config, dict):
        return
    output_format = config.get("format")
    if isinstance(output_format, dict):
        chat["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "output", "schema": output_format.get("schema"), "strict": True}}
    effort = config.get("effort")
    if effort is not None:
        if effort not in _EFFORTS:
            raise _invalid("output_config.effort", f"OpenAI's efforts are {', '.join(_EFFORTS)}")
        chat["reasoning_effort"] = effort
