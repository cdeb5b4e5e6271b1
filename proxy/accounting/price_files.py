"""Price tables as files: config/pricing.yaml's shape (`models: {name: {provider, input, output, ...}}`) and the
config's overrides, read and checked into Price entries. Every error names the file, the dotted key and what was
expected.
"""

from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from proxy.accounting.price import PRICE_FIELDS, Price

ENTRY_FIELDS = ("provider", *PRICE_FIELDS, "source", "as_of")  # also the order pricing_import writes them in
_REQUIRED_PRICES = frozenset({"input", "output"})
_PRICE_EXPECTED = "a non-negative number of USD per 1M tokens"
# libyaml reads the shipped table several times faster than the pure-Python parser.
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PricingError(ValueError):
    """A bad price table or override; str() names the file, the dotted key and what was expected."""


def read_price_sources(files: list[Path], overrides: Mapping[str, Any], overrides_origin: str) -> list[dict[str, Price]]:
    """The price files, then the overrides (overrides_origin names them in error messages): rising precedence."""
    sources = [_read_price_file(Path(path)) for path in files]
    if not isinstance(overrides, Mapping):
        raise _error(overrides_origin, "(top level)", "a mapping of model name to prices", repr(overrides))
    sources.append(_parse_entries(overrides, overrides_origin, key_prefix=""))
    return sources


def _read_price_file(path: Path) -> dict[str, Price]:
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_YamlLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PricingError(f"{path}: cannot read the price table: {exc}") from exc
    if not isinstance(document, dict) or set(document) != {"models"} or not isinstance(document["models"], dict):
        raise _error(str(path), "(top level)", "one key, 'models', mapping model names to prices", _shape(document))
    return _parse_entries(document["models"], str(path), key_prefix="models.")


def _parse_entries(entries: Mapping[str, Any], origin: str, *, key_prefix: str) -> dict[str, Price]:
    return {str(name): _parse_price(fields, origin, f"{key_prefix}{name}") for name, fields in entries.items()}


def _parse_price(fields: Any, origin: str, key: str) -> Price:
    if not isinstance(fields, Mapping):
        raise _error(origin, key, f"a mapping of {', '.join(ENTRY_FIELDS)}", repr(fields))
    for field in fields:
        if field not in ENTRY_FIELDS:
            raise _error(origin, f"{key}.{field}", f"one of the fields {', '.join(ENTRY_FIELDS)}", "an unknown field")
    prices = {field: _usd_per_million(fields.get(field), origin, f"{key}.{field}", field) for field in PRICE_FIELDS}
    return Price(
        **prices,
        provider=_text(fields.get("provider", ""), origin, f"{key}.provider"),
        source=_text(fields.get("source", origin), origin, f"{key}.source"),
        as_of=_text(fields.get("as_of", ""), origin, f"{key}.as_of"),
    )


def _usd_per_million(value: Any, origin: str, key: str, field: str) -> Decimal | None:
    if value is None:
        if field in _REQUIRED_PRICES:
            raise _error(origin, key, _PRICE_EXPECTED, "nothing")
        return None
    # bool is an int to Python, but `input: yes` is a typo, not a price.
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise _error(origin, key, _PRICE_EXPECTED, repr(value))
    try:
        amount = Decimal(str(value))  # str() first: YAML's 0.15 is a float, and its repr is exactly "0.15"
    except InvalidOperation:
        raise _error(origin, key, _PRICE_EXPECTED, repr(value)) from None
    if not amount.is_finite() or amount < 0:
        raise _error(origin, key, _PRICE_EXPECTED, repr(value))
    return amount


def _text(value: Any, origin: str, key: str) -> str:
    if isinstance(value, date):  # YAML reads an unquoted 2025-10-21 as a date
        return value.isoformat()
    if not isinstance(value, str):
        raise _error(origin, key, "text", repr(value))
    return value


def _shape(document: Any) -> str:
    return f"keys {sorted(map(str, document))}" if isinstance(document, dict) else repr(type(document).__name__)


def _error(origin: str, key: str, expected: str, got: str) -> PricingError:
    return PricingError(f"{origin}: {key}: expected {expected}, got {got}")
