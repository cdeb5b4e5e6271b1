"""`load` and `validate` with the shipped policy types: what the CLI, reload, the demo and tests call.

proxy.config sits below the policy types (they read its settings), so it is handed their registry's
parser rather than importing it; this module, above both, hands it.
"""

from pathlib import Path
from typing import Any

from proxy import config
from proxy.accounting.pricing import PriceTable, default_pricing_path
from proxy.policies import registry


def load(path: str | Path | None) -> config.Config:
    """Read and validate a YAML config; None gives the embedded defaults."""
    return config.load(path, parse_policies=registry.parse)


def validate(data: dict[str, Any], *, source: str = "<config>") -> config.Config:
    return config.validate(data, source=source, parse_policies=registry.parse)


def price_table(cfg: config.Config) -> PriceTable:
    """The prices the config says to use: its files (else the shipped table), then its overrides."""
    overrides = {model: override.model_dump(exclude_none=True) for model, override in cfg.pricing.overrides.items()}
    return PriceTable.load(list(cfg.pricing.files or [default_pricing_path()]), overrides)
