"""The settings lookup policies share.

A lookup policy's `mode` widens the generic on | shadow | off with read_only (serve hits, store
nothing) and write_only (store answers, serve nothing: fills a cache before it is trusted). The
chain sees read_only and write_only as `on`: the policy itself skips its read or its write.
Imported by the policy modules only (proxy.policies.* import this, and it imports proxy.policies.base).
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from proxy.lookup import calibration
from proxy.lookup.config import LOCAL, Duration, Similarity, VerifySettings
from proxy.policies.base import PolicyConfig

DEFAULT_MAX_WRONG_RATE = 0.10  # of the shipped calibration: a threshold of ~0.925 with all-MiniLM-L6-v2
DEFAULT_THRESHOLD = 0.92  # for an embedder nothing is calibrated for (until shadow verdicts are in)


class LookupSettings(PolicyConfig):
    mode: Literal["on", "shadow", "off", "read_only", "write_only"] = "on"
    scope: Literal["team", "key", "global"] = "team"  # whose requests share entries
    # Never serve a stored answer to a request sampling hotter than this (None: any temperature).
    max_temperature: Annotated[float, Field(ge=0)] | None = None

    @property
    def reads(self) -> bool:
        return self.mode != "write_only"

    @property
    def writes(self) -> bool:
        return self.mode != "read_only"


class CacheSettings(LookupSettings):
    ttl: Duration = 3600.0
    max_entries: Annotated[int, Field(gt=0)] = 100_000  # per policy, over every scope
    cache_tool_calls: bool = False  # store answers that call tools (off: they depend on the world)


class SimilaritySettings(BaseModel):
    """What a semantic match needs, shared by semantic_cache and answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    embedder: str
    # The operating point: the share of served answers allowed to be answers to another question, from which
    # the threshold is picked (proxy/lookup/calibration.py); or a bare similarity threshold. Not both.
    max_wrong_rate: Annotated[float, Field(gt=0, lt=1)] | None = None
    threshold: Similarity | None = None
    guard_model: str | None = None  # a file bench/lookup_train.py wrote; default: the shipped one (MiniLM)
    verify: VerifySettings | None = None
    # In shadow mode, the lowest similarity still recorded, so `lookup report` can show the bands below.
    shadow_floor: Similarity = 0.80
    # Shadow mode counts a would-be hit as right when the fresh answer's embedding is this close to the stored one's.
    agreement: Similarity = 0.90

    @field_validator("guard_model")
    @classmethod
    def _guard_model_loads(cls, path: str | None) -> str | None:
        if path is not None:
            calibration.load(path)  # GuardModelError is a ValueError: reported with the policy and key
        return path

    @field_validator("threshold")
    @classmethod
    def _one_operating_point(cls, threshold: float | None, info: ValidationInfo) -> float | None:
        if threshold is not None and info.data.get("max_wrong_rate") is not None:
            raise ValueError("set threshold or max_wrong_rate, not both (max_wrong_rate picks the threshold)")
        return threshold

    def models_named(self) -> tuple[str, ...]:
        """The verifier's model must be served by an upstream (checked with the rest of the config)."""
        return (self.verify.model,) if self.verify is not None and self.verify.model != LOCAL else ()
