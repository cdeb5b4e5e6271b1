"""The policy registry: type name -> module. Adding a type is one module and one line here.

Handed down, never imported upward: the composition roots give `parse` to config parsing
(proxy.config_loading) and the chain builds policies with `build` (stages.hooks).
"""

from types import ModuleType
from typing import Any

from pydantic import ValidationError

from proxy.config import ConfigError
from proxy.policies import answers, cap, cascade, concise, deny, exact_cache, prompt_cache, route, semantic_cache
from proxy.policies.base import PolicyConfig, Services

REGISTRY: dict[str, ModuleType] = {
    "concise": concise,
    "cap": cap,
    "route": route,
    "deny": deny,
    "cascade": cascade,
    "exact_cache": exact_cache,
    "semantic_cache": semantic_cache,
    "answers": answers,
    "prompt_cache": prompt_cache,
}


class PolicyConfigError(ConfigError):
    """Names the policy (by name or index), the key and what was expected."""


def parse(entries: Any, source: str) -> tuple[PolicyConfig, ...]:
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise PolicyConfigError(f"{source}: policies: expected a list of policies, got {type(entries).__name__}")
    parsed = [_parse_one(entry, index, source) for index, entry in enumerate(entries)]
    return _with_unique_names(parsed, source)


def _parse_one(entry: Any, index: int, source: str) -> PolicyConfig:
    where = f"{source}: policies[{index}]"
    if not isinstance(entry, dict):
        raise PolicyConfigError(f"{where}: expected a mapping, got {type(entry).__name__}")
    if entry.get("name"):
        where += f" ({entry['name']})"
    kind = entry.get("type")
    if kind not in REGISTRY:
        raise PolicyConfigError(f"{where}.type: expected one of {', '.join(sorted(REGISTRY))}, got {kind!r}")
    try:
        return REGISTRY[kind].Settings.model_validate(entry)
    except ValidationError as exc:
        raise PolicyConfigError("\n".join(_describe(where, err) for err in exc.errors())) from None


def _describe(where: str, err: Any) -> str:
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{where}{key}: unknown key"
    return f"{where}{key}: {err['msg']} (got {err['input']!r})"


def _with_unique_names(parsed: list[PolicyConfig], source: str) -> tuple[PolicyConfig, ...]:
    named = []
    for index, config in enumerate(parsed):
        name = config.name or (config.type if sum(p.type == config.type for p in parsed) == 1 else f"{config.type}-{index}")
        named.append(config.model_copy(update={"name": name}))
    names = [c.name for c in named]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise PolicyConfigError(f"{source}: policies: names must be unique, repeated: {', '.join(repeated)}")
    return tuple(named)


def build(configs: tuple[PolicyConfig, ...], services: Services) -> list[tuple[PolicyConfig, object]]:
    return [(config, REGISTRY[config.type].Policy(config, services)) for config in configs if config.mode != "off"]
