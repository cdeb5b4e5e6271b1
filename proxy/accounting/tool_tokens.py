"""Tokens of tool and function definitions, by the OpenAI cookbook's counting rule (section 7).

The definitions are rendered into the prompt in a hidden format; the cookbook measured its cost per
function, per property and per enum item. Only the counting of text is the caller's (tokens.py owns
tiktoken).
"""

import json
from collections.abc import Callable

_PROP_INIT, _PROP_KEY, _ENUM_INIT, _ENUM_ITEM, _FUNC_END = 3, 3, -3, 3, 12

Count = Callable[[str], int]


def function_definition_tokens(tool_lists: list, count: Count, function_init: int) -> int:
    """Every function defined in the given tool lists (chat tools, legacy functions, Responses tools)."""
    definitions = [
        function
        for tools in tool_lists
        if isinstance(tools, list)
        for tool in tools
        if (function := _function_of(tool)) is not None
    ]
    if not definitions:
        return 0
    return sum(_function_definition(f, count, function_init) for f in definitions) + _FUNC_END


def _function_definition(function: dict, count: Count, function_init: int) -> int:
    total = function_init + count(f"{_text(function.get('name'))}:{_description(function)}")
    parameters = function.get("parameters")
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    if isinstance(properties, dict) and properties:
        total += _PROP_INIT + sum(_property(str(k), v, count) for k, v in properties.items())
    return total


def _property(key: str, schema: object, count: Count) -> int:
    if not isinstance(schema, dict):
        return _PROP_KEY + count(key)
    total = _PROP_KEY
    if isinstance(enum := schema.get("enum"), list):
        total += _ENUM_INIT + sum(_ENUM_ITEM + count(str(item)) for item in enum)
    kind = schema.get("type")
    kind = "|".join(map(str, kind)) if isinstance(kind, list) else _text(kind)
    total += count(f"{key}:{kind}:{_description(schema)}")
    # Approximation: the cookbook's rule covers flat properties only, so nested schema parts
    # (properties, items, anyOf, ...) are counted as their compact JSON.
    nested = {k: v for k, v in schema.items() if k not in ("type", "description", "enum")}
    return total + (count(json.dumps(nested, separators=(",", ":"))) if nested else 0)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _description(schema: dict) -> str:
    return _text(schema.get("description")).removesuffix(".")  # the cookbook drops one final "."


def _function_of(tool: object) -> dict | None:
    """The definition in a Chat tool {"type": "function", "function": {...}}, a legacy `functions`
    entry, or a Responses function/custom tool. Built-in tools (web_search...) have no name and
    are not counted: their hidden prompts are unknown."""
    if not isinstance(tool, dict):
        return None
    if isinstance(function := tool.get("function"), dict):
        return function
    return tool if isinstance(tool.get("name"), str) else None
