"""The `routing:` section: how a model's deployments are chosen, retried, cooled down and fallen back from.

Importing only pydantic (like control/config.py), so the modules that use it never import the whole
config. Durations are seconds, or a number with a unit: 500ms, 5s, 2m.
"""

import fnmatch
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

Reason = Literal["unavailable", "rate_limited", "context_window_exceeded"]
REASONS: tuple[Reason, ...] = ("unavailable", "rate_limited", "context_window_exceeded")
FAILURE_KINDS = ("connect", "timeout")  # retry_on words beside status codes
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)")


def _seconds(value: Any) -> Any:
    if isinstance(value, str):
        found = _DURATION.fullmatch(value.strip())
        if found is None:
            raise ValueError("expected seconds, or a duration such as 500ms, 5s, 2m")
        return float(found[1]) * _UNITS[found[2]]
    return value


Duration = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Timeouts(_Section):
    connect: Duration = 5.0  # to open a connection to an upstream
    # Streams: from sending the request to the first bytes of the answer; a miss fails over like any failure.
    first_token: Duration = 60.0
    # Streams, once they flow: the longest silence between two reads (a stalled stream is cut and said so).
    between_chunks: Duration = 60.0
    total: Duration = 600.0  # one attempt, a whole stream included (a retry gets its own)


class Cooldown(_Section):
    """A deployment that fails `after_failures` times in a row within `within` sits out `for`, then is probed
    by one request: back in rotation if it answers, out for another `for` if it does not."""

    after_failures: Annotated[int, Field(ge=1)] = 3
    within: Duration = 60.0
    for_: Annotated[Duration, Field(alias="for")] = 30.0


class Backoff(_Section):
    """Waits before retrying the same deployment: initial, doubled each time, with jitter, at most max. A
    retry on another deployment does not wait; a provider's Retry-After is waited out, never cut short."""

    initial: Duration = 0.5
    max: Duration = 8.0


class Fallback(_Section):
    from_: Annotated[str, Field(alias="from", min_length=1)]
    to: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1)]
    on: Annotated[tuple[Reason, ...], Field(min_length=1)] = REASONS

    @model_validator(mode="before")
    @classmethod
    def _on_as_written(cls, data: Any) -> Any:
        """YAML 1.1 reads the key `on` as true: `{from: a, to: [b], on: [...]}` means what it says."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data


RetryOn = int | Literal["connect", "timeout"]


class RoutingConfig(_Section):
    strategy: Literal["weighted", "least_busy", "lowest_latency"] = "weighted"
    retries: Annotated[int, Field(ge=0, le=10)] = 2  # per model, only while nothing reached the client
    retry_on: tuple[RetryOn, ...] = (429, 500, 502, 503, 504, 529, "connect", "timeout")  # 529: Anthropic overloaded
    backoff: Backoff = Backoff()
    cooldown: Cooldown = Cooldown()
    timeouts: Timeouts = Timeouts()
    fallbacks: tuple[Fallback, ...] = ()

    @field_validator("retry_on")
    @classmethod
    def _retryable(cls, values: tuple[RetryOn, ...]) -> tuple[RetryOn, ...]:
        for value in values:
            if isinstance(value, int) and value == 400:
                raise ValueError("400 is never retried: the same request would fail the same way")
            if isinstance(value, int) and not 401 <= value <= 599:
                raise ValueError(f"{value} is not an error status: expected 401-599, connect or timeout")
        return values


def fallback_errors(routing: RoutingConfig, serves: Callable[[str], bool], source: str) -> list[str]:
    """Unknown models and chains that loop, each naming its entry; empty when the fallbacks are sound."""
    errors = []
    edges: dict[str, list[str]] = {}
    for index, entry in enumerate(routing.fallbacks):
        where = f"{source}: routing.fallbacks[{index}]"
        if entry.from_ in edges:
            errors.append(f"{where}.from: '{entry.from_}' already has fallbacks (one entry per model)")
        for key, model in (("from", entry.from_), *((f"to[{i}]", m) for i, m in enumerate(entry.to))):
            if not serves(model):
                errors.append(f"{where}.{key}: no upstream serves the model '{model}'")
        edges.setdefault(entry.from_, []).extend(entry.to)
    for index, entry in enumerate(routing.fallbacks):
        loop = _loop_from(entry.from_, edges)
        if loop:
            errors.append(f"{source}: routing.fallbacks[{index}] ({entry.from_}): the chain loops: {' -> '.join(loop)}")
    return errors


def unreachable_names(upstreams: Sequence[Any], source: str) -> list[str]:
    """A model an upstream names that an earlier upstream's other glob serves first: it would never reach this
    one (deployments of a model list the same glob; docs/routing.md). Each names the entry and the fix."""
    errors = []
    for index, upstream in enumerate(upstreams):
        for position, name in enumerate(upstream.models):
            if set(name) & set("*?["):
                continue
            owner, glob = next((i, p) for i, u in enumerate(upstreams) for p in u.models if fnmatch.fnmatchcase(name, p))
            if owner < index and glob not in upstream.models:
                errors.append(
                    f"{source}: upstreams[{index}] ({upstream.name}).models[{position}]: '{name}' is served first by "
                    f"upstreams[{owner}] ({upstreams[owner].name}) through '{glob}': to make them deployments of one "
                    f"model give both the same entry ('{name}' on both, or '{glob}' when neither renames the model), "
                    "or move this upstream above it")
    return errors


def _loop_from(start: str, edges: dict[str, list[str]]) -> list[str] | None:
    """A path from `start` back to itself, depth first, or None."""
    path = [start]

    def visit(model: str, seen: frozenset[str]) -> bool:
        for target in edges.get(model, ()):
            path.append(target)
            if target == start or (target not in seen and visit(target, seen | {target})):
                return True
            path.pop()
        return False

    return path if visit(start, frozenset({start})) else None
