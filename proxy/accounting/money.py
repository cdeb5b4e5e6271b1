"""Money is exact: Decimal while computing, integer nano-dollars when stored or summed.

Nano- rather than micro-dollars because a short embedding call costs well under a micro-dollar
(10 tokens of text-embedding-3-small is $0.0000002) and rounding it to zero would hide lookup spend.
An int64 of nano-dollars still holds $9.2 billion, enough for any ledger SUM. The Redis store's scripts
compute in Lua's doubles, exact up to 2**53: a budget's limit stays below it (MAX_EXACT), so that every
reservation that reaches Redis (never more than the limit) and every counter of it stays exact.
"""

from decimal import ROUND_HALF_UP, Decimal

NANOS_PER_USD = 1_000_000_000
MAX_EXACT = 2**53 - 1  # the largest budget limit, in nano-dollars, tokens or requests
MAX_EXACT_USD = Decimal(MAX_EXACT) / NANOS_PER_USD  # $9,007,199.254740991
_NANO = Decimal("1e-9")


def usd_to_nanos(usd: Decimal) -> int:
    return int((usd * NANOS_PER_USD).to_integral_value(rounding=ROUND_HALF_UP))


def nanos_to_usd(nanos: int) -> Decimal:
    return (Decimal(nanos) * _NANO).normalize() if nanos else Decimal(0)


def format_usd(nanos: int) -> str:
    """Fixed-point text with all nine decimals, e.g. '0.000012500' (for headers and JSON)."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), NANOS_PER_USD)
    return f"{sign}{whole}.{frac:09d}"
