"""Typed, frozen configuration. `load(path)` validates everything at start-up.

Every mistake names the file, the dotted key and what was expected. Secrets never appear here:
only the names of the environment variables that hold them. The sections live beside the code they
configure (`server_config.py`, `upstream_config.py`, `control/`, `routing/`, `lookup/`); this module
puts them together and checks what spans several of them.
"""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from proxy.control.alerting_config import AlertingConfig, alerting_problem
from proxy.control.config import AuthConfig, BudgetConfig, LedgerConfig, StoreConfig, TagsConfig, mask_secrets
from proxy.lookup.config import EmbedderConfig, check_embedders
from proxy.routing.config import RoutingConfig, fallback_errors, unreachable_names
from proxy.server_config import ServerConfig
from proxy.upstream_config import UpstreamConfig, UpstreamMatcher, default_upstreams


class ConfigError(ValueError):
    """A configuration mistake; str() is a ready-to-print message naming file and key."""


# (the `policies` entries, the source's name) -> the typed policy settings; raises ConfigError.
# Handed in by the composition roots (proxy.config_loading): the policy types sit above this module.
PolicyParser = Callable[[Any, str], tuple[Any, ...]]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceOverride(Section):
    """USD per 1M tokens; strings and numbers are both read exactly (as Decimal)."""

    input: float | str
    output: float | str = 0
    cached_input: float | str | None = None
    cache_write: float | str | None = None
    cache_write_1h: float | str | None = None
    reasoning: float | str | None = None


class PricingConfig(Section):
    files: tuple[Path, ...] | None = None  # None: the shipped table
    overrides: dict[str, PriceOverride] = {}
    # A model without a price: served (no usd budget can bound it), served except where a usd budget covers the
    # request (refused there: it would spend past that budget unseen), or refused everywhere.
    unpriced: Literal["serve", "serve_outside_usd_budgets", "reject"] = "serve_outside_usd_budgets"


class Config(Section):
    server: ServerConfig = ServerConfig()
    upstreams: tuple[UpstreamConfig, ...] = Field(default=None, validate_default=True)  # type: ignore[assignment]
    pricing: PricingConfig = PricingConfig()
    ledger: LedgerConfig = LedgerConfig()
    tags: TagsConfig = TagsConfig()
    auth: AuthConfig = AuthConfig()
    store: StoreConfig = StoreConfig()
    budgets: tuple[BudgetConfig, ...] = ()
    routing: RoutingConfig = RoutingConfig()
    alerting: AlertingConfig = AlertingConfig()  # where budget alerts go (docs/budgets.md)
    # Output tokens a budget reserves for a request that sets no max_tokens (see docs/budgets.md).
    budgets_default_max_output_tokens: Annotated[int, Field(gt=0)] = 4096
    embedders: dict[str, EmbedderConfig] = {}  # by name, for lookup policies (docs/lookup.md)
    # Typed per policy type by the PolicyParser handed to validate (each type owns its settings model).
    policies: tuple[Any, ...] = ()

    @field_validator("upstreams", mode="before")
    @classmethod
    def _default_upstream(cls, value: Any) -> Any:
        return default_upstreams() if value is None else value

    @field_validator("upstreams")
    @classmethod
    def _unique_names(cls, upstreams: tuple[UpstreamConfig, ...]) -> tuple[UpstreamConfig, ...]:
        if not upstreams:
            raise ValueError("expected at least one upstream")
        names = [u.name for u in upstreams]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"upstream names must be unique, repeated: {', '.join(duplicates)}")
        return upstreams

    def upstream_matcher(self) -> "UpstreamMatcher":
        return UpstreamMatcher(self.upstreams)


def load(path: str | Path | None, *, parse_policies: PolicyParser) -> Config:
    """Read and validate a YAML config; None gives the embedded defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top, got {type(data).__name__}")
    return validate(data, source=str(path), parse_policies=parse_policies)


def validate(data: dict[str, Any], *, source: str = "<config>", parse_policies: PolicyParser) -> Config:
    data = dict(data)
    raw_policies = data.pop("policies", None)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(source, err, data) for err in exc.errors())) from None
    if problem := alerting_problem(config.alerting, config.budgets):
        raise ConfigError(f"{source}: {problem}")
    parsed = parse_policies(raw_policies, source)
    _check_models_are_served(config, parsed, source)
    _check_anthropic_keys(config, source)
    matcher = config.upstream_matcher()
    errors = unreachable_names(config.upstreams, source)
    errors += fallback_errors(config.routing, lambda model: matcher.for_model(model) is not None, source)
    if errors:
        raise ConfigError("\n".join(errors))
    if missing := check_embedders(config.embedders, {u.name for u in config.upstreams}, parsed, source):
        raise ConfigError(missing)
    return config.model_copy(update={"policies": parsed})


def _check_models_are_served(config: Config, policies: tuple[Any, ...], source: str) -> None:
    """A policy that sends work to a model no upstream serves would fail every request it matches."""
    matcher = config.upstream_matcher()
    for index, policy in enumerate(policies):
        for model in getattr(policy, "models_named", tuple)():
            if matcher.for_model(model) is None:
                raise ConfigError(
                    f"{source}: policies[{index}] ({policy.name}): no upstream serves the model '{model}' "
                    "(add it to an upstream's models)"
                )
    for index, budget in enumerate(config.budgets):
        if budget.downgrade_to and matcher.for_model(budget.downgrade_to) is None:
            raise ConfigError(
                f"{source}: budgets[{index}].downgrade_to: no upstream serves the model '{budget.downgrade_to}'"
            )


def _check_anthropic_keys(config: Config, source: str) -> None:
    """An Anthropic upstream is always called with its own key: a client's key is never passed on to it."""
    for index, upstream in enumerate(config.upstreams):
        if upstream.provider == "anthropic" and not upstream.api_key:
            where = f"${upstream.api_key_env} is not set" if upstream.api_key_env else "api_key_env is null"
            raise ConfigError(f"{source}: upstreams[{index}] ({upstream.name}): an Anthropic upstream needs an API "
                              f"key, and {where}")


def _describe(source: str, err: Any, data: dict[str, Any]) -> str:
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in err["loc"]).lstrip(".")
    key = _with_upstream_name(key, err["loc"], data)
    key = key or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{source}: {key}: unknown key"
    return f"{source}: {key}: {err['msg']} (got {_without_credentials(repr(err['input']))})"


def _with_upstream_name(key: str, loc: tuple, data: dict[str, Any]) -> str:
    """upstreams[1].weight -> upstreams[1] (openai-b).weight: the entry by the name its author gave it."""
    if len(loc) < 2 or loc[0] != "upstreams" or not isinstance(loc[1], int):
        return key
    entries = data.get("upstreams")
    entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
    name = entry.get("name") if isinstance(entry, dict) else None
    return key.replace(f"upstreams[{loc[1]}]", f"upstreams[{loc[1]}] ({name})", 1) if isinstance(name, str) else key


def _without_credentials(text: str) -> str:
    """A URL's user:password never reaches an error message (a Redis URL may come from a secret)."""
    return re.sub(r"://[^/@\s'\"]*@", "://***@", text)


def warnings(config: Config) -> list[str]:
    """What is valid but probably not meant: printed by `check-config` and logged by `serve`."""
    found = []
    for index, upstream in enumerate(config.upstreams):
        if upstream.api_key_env and not upstream.api_key:
            passed_on = ("requests go upstream with the client's own Authorization header; a request that has none "
                         "(a client using a thriftgate key) gets" if upstream.provider == "openai" else "requests get")
            found.append(
                f"upstreams[{index}] ({upstream.name}): ${upstream.api_key_env} (api_key_env) is not set: {passed_on} "
                "a 502 naming the variable. Set it, or api_key_env: null to pass clients' keys on by design")
    server = config.server
    if server.unpriced_paid_paths and any(b.usd is not None or b.tokens_per_minute for b in config.budgets):
        found.append(f"server.unpriced_paid_paths: {', '.join(server.unpriced_paid_paths)} pass through unpriced: "
                     "what they spend no usd or tokens_per_minute budget counts (requests_per_minute limits them)")
    if server.metrics_auth == "token" and not server.metrics_token and not config.auth.master_key:
        found.append(f"server.metrics_auth: token, but ${server.metrics_token_env} is not set: /metrics answers 403")
    if server.metrics_auth == "master_key" and not config.auth.master_key:
        found.append(f"server.metrics_auth: master_key, but ${config.auth.master_key_env} is not set: "
                     "/metrics answers 403")
    return found


def masked_summary(config: Config) -> dict[str, Any]:
    """The resolved settings as plain data, with each secret shown only as set/unset."""
    summary = config.model_dump(mode="json", by_alias=True, exclude={"policies"})  # `from`, `for`: as written
    mask_secrets(summary, config.auth, config.store)
    summary["policies"] = [policy.model_dump(mode="json", by_alias=True, exclude_defaults=True) | {"name": policy.name}
                           for policy in config.policies]
    token_state = "set" if config.server.metrics_token else "unset"
    summary["server"]["metrics_token_env"] = f"{config.server.metrics_token_env} ({token_state})"
    for upstream, shown in zip(config.upstreams, summary["upstreams"]):
        if upstream.api_key_env:
            state = "set" if upstream.api_key else "unset"
            shown["api_key_env"] = f"{upstream.api_key_env} ({state})"
    return summary
