"""The settings lookup policies share.

A lookup policy's `mode` widens the generic on | shadow | off with read_only (serve hits, store
nothing) and write_only (store answers, serve nothing: fills a cache before it is trusted). The
chain sees read_only and write_only as `on`: the policy itself skips its read or its write.
Imported by the policy modules only (proxy.policies.* import this, and it imports proxy.policies.base).
"""

import importlib.util
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from proxy.lookup import calibration
from proxy.lookup.config import Duration, Similarity
from proxy.lookup.verifier import LOCAL
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


class VerifySettings(BaseModel):
    """A second opinion on a candidate the guard is not sure of (docs/lookup.md, "Verifying")."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    model: str = Field(alias="with")  # a model an upstream serves, or `local` (a cross-encoder at model_path)
    when: Literal["uncertain", "always"] = "uncertain"  # below the operating threshold only, or every candidate
    model_path: str | None = None  # with: local: a sentence-transformers CrossEncoder directory
    min_similarity: Similarity = 0.80  # candidates below it are a miss without asking
    min_score: Annotated[float, Field(ge=0, le=1)] = 0.5  # with: local: the pair model's "same" probability
    timeout_ms: Annotated[int, Field(gt=0)] = 2000
    cache_size: Annotated[int, Field(ge=0)] = 10_000  # decisions remembered per pair of questions

    @model_validator(mode="after")
    def _model_found(self) -> "VerifySettings":
        if self.model != LOCAL:
            if self.model_path is not None:
                raise ValueError("model_path is for `with: local` only")
            return self
        if self.model_path is None:
            raise ValueError("`with: local` needs model_path: a cross-encoder directory")
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ValueError("a local verifier needs sentence-transformers: pip install 'thriftgate[local]'")
        if not Path(self.model_path).is_dir():
            raise ValueError(f"model_path: no cross-encoder directory at {self.model_path}")
        return self


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
