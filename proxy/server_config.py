"""The `server:` section: where the proxy listens, its limits, who may read /metrics, and which /v1 paths
besides the priced endpoints it passes through.

A pass-through entry is a glob of the normalised path, `*` one segment and a last `**` any rest (including
none), after the methods it allows when it names some: "GET /v1/models/*", "GET,DELETE /v1/responses/*";
without methods, any method. GET allows HEAD too.
"""

import os
import re
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# Free upstream, and showing the caller only what it names by id: passed through by default (still
# authenticated, recorded and counted against request budgets).
FREE_PASSTHROUGH_PATHS = (
    "GET /v1/models", "GET /v1/models/*",  # not DELETE: that deletes one of the organisation's fine-tuned models
    "POST /v1/moderations",
    # A stored chat completion, response or conversation, by its id. Not the list of stored chat completions
    # (GET /v1/chat/completions): it is the whole project's, every team's prompts and answers.
    "GET,POST,DELETE /v1/chat/completions/*", "GET /v1/chat/completions/*/messages",
    "GET,DELETE /v1/responses/*", "GET /v1/responses/*/input_items", "POST /v1/responses/*/cancel",
    "POST /v1/responses/input_tokens",
    "/v1/conversations", "/v1/conversations/*", "/v1/conversations/*/items", "/v1/conversations/*/items/*",
)
# Endpoints that cost money and that thriftgate does not price: what goes through them is spent without any usd
# or token budget counting it, so each is refused (403) whatever passthrough_paths says, unless the operator
# lists it in server.unpriced_paid_paths. (/v1/files and /v1/batches are priced: proxy/batch/.)
PAID_UNPRICED_PATHS = (
    "/v1/images/**", "/v1/audio/**", "/v1/videos/**",  # generated media, speech, transcription
    "/v1/fine_tuning/**", "/v1/uploads/**", "/v1/vector_stores/**",  # training, storage
    "/v1/assistants/**", "/v1/threads/**", "/v1/evals/**", "/v1/containers/**", "/v1/chatkit/**",  # model runs
    "/v1/realtime/**",  # sessions, and client secrets that spend at the provider without passing here again
    "/v1/responses/compact",  # a model call of its own
    "/v1/messages/batches/**", "/v1/complete",  # Anthropic's message batches and legacy text completions
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ENTRY = re.compile(r"(?:(?P<methods>[A-Z]+(?:,[A-Z]+)*) )?"
                    r"(?P<glob>/v1(?:/(?:[A-Za-z0-9_:@~-][A-Za-z0-9._:@~-]*|\*))*(?:/\*\*)?)")


def split_entry(entry: str) -> tuple[frozenset[str] | None, str]:
    """"GET,DELETE /v1/x/*" -> ({"GET", "HEAD", "DELETE"}, "/v1/x/*"); None: any method. Entries are valid."""
    found = _ENTRY.fullmatch(entry)
    assert found is not None, entry
    if found["methods"] is None:
        return None, found["glob"]
    methods = set(found["methods"].split(","))
    return frozenset(methods | {"HEAD"} if "GET" in methods else methods), found["glob"]


class PathGlobs:
    """Entries compiled once: whether a method on a normalised path matches one of them."""

    def __init__(self, entries: Iterable[str]) -> None:
        globs: dict[str | None, list[str]] = {}
        for entry in entries:
            methods, glob = split_entry(entry)
            for method in methods or (None,):
                globs.setdefault(method, []).append(glob)
        self._patterns = {method: _compiled(method_globs) for method, method_globs in globs.items()}

    def match(self, method: str, path: str) -> bool:
        return any(pattern.fullmatch(path) for pattern in (self._patterns.get(None), self._patterns.get(method))
                   if pattern is not None)


def _compiled(globs: list[str]) -> re.Pattern:
    parts = (re.escape(glob).replace(r"/\*\*", "(?:/[^/]+)*").replace(r"\*", "[^/]+") for glob in globs)
    return re.compile("|".join(f"(?:{part})" for part in parts))


PAID_UNPRICED = PathGlobs(PAID_UNPRICED_PATHS)


def _path_entry(entry: str) -> str:
    found = _ENTRY.fullmatch(entry)
    if not found or found["glob"] == "/v1":
        raise ValueError(f"{entry!r}: expected a /v1/ path of names, '*' (one segment) and a last '**', after the "
                         "methods it allows if any ('GET /v1/models/*')")
    if unknown := set((found["methods"] or "").split(",")) - _METHODS - {""}:
        raise ValueError(f"{entry!r}: unknown method {', '.join(sorted(unknown))}; expected some of "
                         f"{', '.join(sorted(_METHODS))}")
    return entry


def _not_paid(entry: str) -> str:
    """A paid endpoint listed here would still be refused: say where it belongs instead."""
    example = split_entry(entry)[1].replace("/**", "").replace("*", "x")
    if any(PAID_UNPRICED.match(method, example) for method in _METHODS):
        raise ValueError(f"{entry!r} is a paid endpoint that thriftgate does not price; to pass it through anyway "
                         "(counted against request budgets only), list it in server.unpriced_paid_paths")
    return entry


PathEntry = Annotated[str, AfterValidator(_path_entry)]


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 4100
    # A long chat (a 1M-token context is ~4 MB of text) with a few images; larger bodies get a 413.
    max_body_bytes: Annotated[int, Field(gt=0)] = 16 * 1024 * 1024
    # How long an in-flight request may take to finish after SIGTERM before the process exits.
    shutdown_grace_seconds: Annotated[float, Field(ge=0)] = 30.0
    access_log: bool = True  # one JSON line per request on stdout: ids, team, models, tokens, cost, policies
    log_prompts: bool = False  # add the last user message to that line (off: prompts are the users' data)
    # /metrics shows every team's and model's spend: none (open, keep the port private), master_key, or
    # token (a scrape token from metrics_token_env; the master key works too).
    metrics_auth: Literal["none", "master_key", "token"] = "none"
    metrics_token_env: str = "THRIFTGATE_METRICS_TOKEN"
    # The /v1 paths passed through unpriced (see above); others get a 404. [] passes none.
    passthrough_paths: tuple[Annotated[PathEntry, AfterValidator(_not_paid)], ...] = FREE_PASSTHROUGH_PATHS
    # The paid endpoints of PAID_UNPRICED_PATHS the operator accepts passing through unpriced: ["/v1/**"] all.
    unpriced_paid_paths: tuple[PathEntry, ...] = ()

    @property
    def metrics_token(self) -> str | None:
        return os.environ.get(self.metrics_token_env) or None
