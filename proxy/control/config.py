"""Config sections for cost control: `auth` (virtual keys, master key), `store` and `budgets`.

Kept apart from config.py (which includes them in Config) and importing only pydantic, so that
the modules using them never import the whole config. Errors name the entry: `budgets[2].window`.
"""

import os
import re
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from proxy.accounting.money import MAX_EXACT, MAX_EXACT_USD
from proxy.control.alerting_config import AlertConfig

# Key ids and team names: printable, short, safe as ledger values and as parts of Redis keys.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
SCOPE_KINDS = ("team", "key", "user", "model", "global")
Window = Literal["minute", "hour", "day", "month"]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyConfig(_Section):
    """A key declared by the sha256 of its text (`thriftgate keys generate` prints both)."""

    id: Name
    team: Name
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]

    @field_validator("sha256")
    @classmethod
    def _lower(cls, digest: str) -> str:
        return digest.lower()


class AuthConfig(_Section):
    required: bool = False  # true: every /v1 request needs a valid thriftgate key
    master_key_env: str | None = "THRIFTGATE_MASTER_KEY"  # guards /admin/*; the key itself is never in config
    keys: tuple[KeyConfig, ...] = ()
    # How long a replica trusts a key it looked up in a shared store (a revocation elsewhere takes this long).
    key_cache_seconds: Annotated[float, Field(ge=0)] = 5.0

    @field_validator("keys")
    @classmethod
    def _unique(cls, keys: tuple[KeyConfig, ...]) -> tuple[KeyConfig, ...]:
        for field in ("id", "sha256"):
            values = [getattr(key, field) for key in keys]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"key {field}s must be unique, repeated: {', '.join(repeated)}")
        return keys

    @property
    def master_key(self) -> str | None:
        return (os.environ.get(self.master_key_env) or None) if self.master_key_env else None


class StoreConfig(_Section):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: Annotated[str, Field(pattern=r"^(rediss?|unix)://")] = "redis://127.0.0.1:6379/0"
    # The URL from this environment variable instead (it may hold a password: keep it out of the file).
    redis_url_env: str | None = None
    key_prefix: str = "thriftgate:"
    on_failure: Literal["closed", "open"] = "closed"  # Redis unreachable: refuse budgeted requests, or serve
    timeout_seconds: Annotated[float, Field(gt=0)] = 0.5  # per Redis command; then the store counts as down
    max_connections: Annotated[int, Field(gt=0)] = 64  # per process; more concurrent calls wait their turn
    retry_seconds: Annotated[float, Field(gt=0)] = 1.0  # how often a down store is tried again
    # A reservation whose request never settles (the process died) stops holding budget after this long.
    reservation_ttl_seconds: Annotated[float, Field(gt=0)] = 900.0
    # Redis: a replica's lease on a budget's headroom lasts this long unless renewed; a dead replica's
    # leases stop holding budget after it.
    lease_seconds: Annotated[float, Field(ge=2)] = 10.0

    @model_validator(mode="before")
    @classmethod
    def _url_from_environment(cls, data: Any) -> Any:
        name = data.get("redis_url_env") if isinstance(data, dict) else None
        if not name:
            return data
        if "redis_url" in data:
            raise ValueError("give redis_url or redis_url_env, not both")
        url = os.environ.get(name)
        if not url:
            raise ValueError(f"redis_url_env names ${name}, which is not set")
        return {**data, "redis_url": url}


class LedgerConfig(_Section):
    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: str = "thriftgate-ledger.db"  # sqlite: this replica's file
    # postgres: the variable holding the DSN (it may hold a password: keep it out of the file).
    dsn_env: str = "THRIFTGATE_LEDGER_DSN"
    # postgres: rows wait here, on disk, while the database is down (and across a restart meanwhile).
    spool_path: str = "thriftgate-ledger-spool"
    spool_max_mb: Annotated[int, Field(gt=0)] = 1024  # past this, new rows are dropped (with an error log)
    flush_interval_seconds: Annotated[float, Field(gt=0)] = 0.25
    batch_size: Annotated[int, Field(gt=0)] = 512
    retry_seconds: Annotated[float, Field(gt=0)] = 1.0  # how often a down database is tried again
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0  # connecting, and each statement
    pool_size: Annotated[int, Field(gt=0)] = 4

    @model_validator(mode="after")
    def _dsn_set(self) -> "LedgerConfig":
        if self.backend == "postgres" and not os.environ.get(self.dsn_env):
            raise ValueError(f"backend: postgres reads its DSN from ${self.dsn_env} (dsn_env), which is not set")
        return self

    @property
    def dsn(self) -> str:
        return os.environ.get(self.dsn_env, "")


TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/=-]{0,63}$"


class TagsConfig(_Section):
    # Tags worth their own label on the spend metrics (bounded); every tag is in the ledger regardless.
    metrics: tuple[Annotated[str, Field(pattern=TAG_PATTERN)], ...] = ()


class BudgetConfig(_Section):
    scope: str  # team:NAME | key:ID | user:NAME | model:GLOB | global
    # Limits are counted exactly up to MAX_EXACT (nano-dollars: $9,007,199.25 a window).
    usd: Annotated[Decimal, Field(gt=0, le=MAX_EXACT_USD)] | None = None
    window: Window | None = None  # of the usd budget; calendar-aligned UTC
    tokens_per_minute: Annotated[int, Field(gt=0, le=MAX_EXACT)] | None = None
    requests_per_minute: Annotated[int, Field(gt=0, le=MAX_EXACT)] | None = None
    on_exhausted: Literal["reject", "downgrade"] = "reject"
    downgrade_to: str | None = None
    soft_limit: Annotated[float, Field(gt=0, lt=1)] | None = None  # past this share of usd, use downgrade_to
    alerts: tuple[AlertConfig, ...] = ()  # a webhook message once per window as usd spend passes each share

    @field_validator("scope")
    @classmethod
    def _known_kind(cls, scope: str) -> str:
        kind, _, value = scope.partition(":")
        if kind not in SCOPE_KINDS:
            raise ValueError(f"unknown scope kind {kind!r}: expected team:NAME, key:ID, user:NAME, model:GLOB or global")
        if (kind == "global") != (not value):
            raise ValueError("expected 'global' alone, or KIND:VALUE with a value")
        return scope

    @model_validator(mode="after")
    def _consistent(self) -> "BudgetConfig":
        if self.usd is None and self.tokens_per_minute is None and self.requests_per_minute is None:
            raise ValueError("a budget needs usd (with a window), tokens_per_minute or requests_per_minute")
        if (self.usd is None) != (self.window is None):
            raise ValueError("usd and window go together: usd: 50, window: minute | hour | day | month")
        downgrades = self.on_exhausted == "downgrade" or self.soft_limit is not None
        if downgrades and (self.usd is None or not self.downgrade_to):
            raise ValueError("on_exhausted: downgrade and soft_limit need a usd budget and downgrade_to")
        if self.downgrade_to and not downgrades:
            raise ValueError("downgrade_to is used only with on_exhausted: downgrade or a soft_limit")
        if self.alerts and self.usd is None:
            raise ValueError("alerts need a usd budget (usd and window)")
        if len({alert.at for alert in self.alerts}) < len(self.alerts):
            raise ValueError("alerts: each share (at) once")
        return self

    @property
    def kind(self) -> str:
        return self.scope.partition(":")[0]

    @property
    def value(self) -> str:
        return self.scope.partition(":")[2]


def configured_teams(auth: AuthConfig, budgets: tuple[BudgetConfig, ...]) -> frozenset[str]:
    """The teams worth their own metric label: those the config names."""
    return frozenset(key.team for key in auth.keys) | {b.value for b in budgets if b.kind == "team"}


def mask_secrets(summary: dict[str, Any], auth: AuthConfig, store: StoreConfig) -> None:
    """For `check-config`: the master key only as set/unset, a Redis password never."""
    if auth.master_key_env:
        summary["auth"]["master_key_env"] = f"{auth.master_key_env} ({'set' if auth.master_key else 'unset'})"
    summary["store"]["redis_url"] = masked_url(store.redis_url)


def masked_dsn(dsn: str) -> str:
    """A database DSN fit for logs and errors: URL or key=value form, the password never shown."""
    if "://" in dsn:
        return masked_url(dsn)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", dsn)


def masked_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def workers_problem(store: StoreConfig, budgets: tuple[BudgetConfig, ...], auth: AuthConfig) -> str | None:
    """`serve --workers N` runs N processes: an in-process store would give each its own budgets and keys."""
    if store.backend == "memory" and (budgets or auth.master_key):
        return ("budgets and keys created through the admin API need a store all workers share: "
                "set store.backend: redis, or serve with one worker")
    return None
