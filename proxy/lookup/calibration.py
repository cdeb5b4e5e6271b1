"""A semantic lookup's guard model and operating point.

A guard model (JSON, written by bench/lookup_train.py from human-labelled pairs; the one shipped is
proxy/defaults/lookup_minilm.json, for all-MiniLM-L6-v2) says which of the guard's checks refuse a candidate
and, for each similarity threshold, the precision and duplicate hit rate measured there. `max_wrong_rate`
picks the lowest threshold from which every threshold measured has a precision of at least 1 - max_wrong_rate
(the curve is noisy: a lucky band below a bad one is not an operating point). Once enough of the
operator's own shadow-mode verdicts are in the ledger (either backend) (MIN_VERDICTS judged candidates of that policy), the
curve comes from them instead: precision = the share of candidates above a threshold whose fresh answer
agreed, hit rate = their share of lookups.
"""

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson

from proxy.lookup.guard import CHECKS

log = logging.getLogger("thriftgate.lookup")

SHIPPED = Path(__file__).resolve().parent.parent / "defaults" / "lookup_minilm.json"
MIN_SERVED = 20  # a threshold measured on fewer hits is not an operating point
MIN_VERDICTS = 200  # shadow verdicts of a policy before they replace the shipped curve
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_HEAD = 1 << 20


class GuardModelError(ValueError):
    """The guard model file is missing or is not one bench/lookup_train.py writes."""


@dataclass(frozen=True, slots=True)
class Point:
    similarity: float
    precision: float
    hit_rate: float
    served: int


@dataclass(frozen=True, slots=True)
class GuardModel:
    path: str
    embedder: str  # the model it was measured with, by name
    embedder_identity: str  # and by model_identity()
    checks: tuple[str, ...]
    curve: tuple[Point, ...]  # ascending similarity


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    threshold: float
    expected: Point | None  # what was measured there; None: nothing calibrated for this embedder
    basis: str  # "configured" | "shipped" | "shadow" | "default"
    reachable: bool = True  # False: no measured threshold reaches the precision asked for

    def describe(self) -> str:
        if self.expected is None:
            return f"threshold {self.threshold:.3f} ({self.basis}; no calibration for this embedder)"
        rate = f"{self.expected.hit_rate:.1%} duplicate hit rate" if self.basis != "shadow" else \
            f"{self.expected.hit_rate:.1%} of lookups served"
        return (f"threshold {self.threshold:.3f} ({self.basis}): expected precision {self.expected.precision:.1%}, "
                f"{rate}" + ("" if self.reachable else "; the precision asked for is not reached"))


def load(path: str | Path) -> GuardModel:
    try:
        data = json.loads(Path(path).read_text())
        checks = tuple(data["checks"])
        unknown = [name for name in checks if name not in CHECKS]
        if data["format"] != 1 or unknown:
            raise GuardModelError(f"{path}: unknown format or checks {unknown}")
        curve = tuple(Point(float(p["similarity"]), float(p["precision"]), float(p["hit_rate"]), int(p["served"]))
                      for p in data["curve"])
        return GuardModel(str(path), str(data["embedder"]), str(data["embedder_identity"]), checks,
                          tuple(sorted(curve, key=lambda p: p.similarity)))
    except OSError as exc:
        raise GuardModelError(f"no guard model at {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise GuardModelError(f"{path}: not a guard model: {exc}") from None


def model_identity(model_path: str) -> str:
    """What tells one local model from another cheaply: the size and the first MiB of its weights file."""
    for name in _WEIGHT_FILES:
        weights = Path(model_path) / name
        if weights.is_file():
            with weights.open("rb") as file:
                head = file.read(_HEAD)
            return f"{weights.stat().st_size}:{hashlib.sha256(head).hexdigest()[:16]}"
    return f"unknown:{model_path}"


def operating_point(curve: tuple[Point, ...], max_wrong_rate: float, basis: str) -> OperatingPoint:
    # A wrong rate below 1/served cannot be told from zero: a point must have measured enough hits to show it.
    usable = [point for point in curve if point.served >= max(MIN_SERVED, 1 / max_wrong_rate)]
    if not any(point.served >= MIN_SERVED for point in curve):
        raise GuardModelError("the calibration curve has no threshold measured on enough hits")
    chosen = None
    for point in reversed(usable):
        if point.precision < 1 - max_wrong_rate:
            break
        chosen = point
    if chosen is not None:
        return OperatingPoint(chosen.similarity, chosen, basis)
    usable = usable or [point for point in curve if point.served >= MIN_SERVED]
    best = max(usable, key=lambda point: (point.precision, -point.similarity))
    return OperatingPoint(best.similarity, best, basis, reachable=False)


def shadow_curve(verdicts: list[tuple[float, bool]], lookups: int, step: float = 0.005) -> tuple[Point, ...]:
    """From (similarity, agreed) of a policy's shadow lookups: precision and share served above each threshold."""
    points = []
    for i in range(int(round((1 - 0.8) / step))):
        threshold = round(0.8 + i * step, 3)
        above = [agreed for similarity, agreed in verdicts if similarity >= threshold]
        if above:
            points.append(Point(threshold, sum(above) / len(above), len(above) / max(lookups, 1), len(above)))
    return tuple(points)


@dataclass(frozen=True, slots=True)
class Verdicts:
    judged: tuple[tuple[float, bool], ...]  # (similarity, agreed) of shadow candidates
    lookups: int


def shadow_verdicts(ledger, since: float) -> dict[str, Verdicts]:
    """Per policy, the shadow-mode verdicts in the ledger (a LedgerConfig: this replica's SQLite file, or the
    fleet's PostgreSQL) since then; {} when there is no ledger yet or it cannot be read (logged)."""
    from proxy.accounting.ledger_backends import open_reader

    def read() -> list[dict]:
        with open_reader(ledger) as reader:
            return reader.lookup_rows(since=since)

    if ledger.backend == "sqlite" and not Path(ledger.path).is_file():
        return {}
    judged: dict[str, list[tuple[float, bool]]] = {}
    lookups: dict[str, int] = {}
    try:
        # A thread of its own: PostgreSQL's reader runs an event loop, and the proxy's may be running here.
        with ThreadPoolExecutor(1, thread_name_prefix="thriftgate-calibration") as pool:
            rows = pool.submit(read).result()
    except Exception as exc:  # the shipped curve serves instead: never a failed start
        log.warning("lookup: shadow verdicts not read from the %s ledger: %s: %s", ledger.backend,
                    type(exc).__name__, exc)
        return {}
    for row in rows:
        for policy, lookup in orjson.loads(row["lookups"]).items():
            if not lookup.get("shadow"):
                continue
            lookups[policy] = lookups.get(policy, 0) + 1
            if lookup.get("agreed") is not None and lookup.get("similarity") is not None:
                judged.setdefault(policy, []).append((float(lookup["similarity"]), bool(lookup["agreed"])))
    return {policy: Verdicts(tuple(judged.get(policy, ())), count) for policy, count in lookups.items()}
