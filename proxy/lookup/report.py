"""`thriftgate lookup report`: hit rate per lookup policy and, from shadow mode, measured precision per
similarity band, so the operator picks a threshold from evidence on their own traffic; with
--max-wrong-rate, the threshold that rate picks from this curve (what a restart picks once a policy has
calibration.MIN_VERDICTS verdicts); and what verifying cost.

A shadow lookup records its best candidate that passed the near-miss guard (down to the policy's
shadow_floor) and whether the fresh answer agreed with it. Precision at a threshold t is the share of
judged candidates with similarity >= t that agreed; the hit rate at t is their share of all lookups.
"""

import math
from collections import defaultdict
from dataclasses import dataclass, field

import orjson

from proxy.accounting.money import format_usd
from proxy.accounting.reports import render_table
from proxy.lookup import calibration

BAND = 0.02  # width of a similarity band
_BANDS = round(1 / BAND)  # the top one, [0.98, 1.00], holds 1.0 too


@dataclass(slots=True)
class _Tally:
    lookups: int = 0
    hits: int = 0
    shadow: bool = False
    results: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    embedding_cost_nanos: int = 0
    verified: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # same | different | failed
    verify_cost_nanos: int = 0
    judged: list[tuple[float, bool]] = field(default_factory=list)  # (similarity, agreed)


def lookup_report(rows: list[dict], max_wrong_rate: float | None = None) -> list[dict]:
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    for row in rows:
        for policy, lookup in orjson.loads(row["lookups"]).items():
            tally = tallies[policy]
            tally.lookups += 1
            tally.results[lookup["result"]] += 1
            tally.hits += lookup["result"].endswith("-hit")
            tally.shadow = tally.shadow or lookup.get("shadow", False)
            tally.embedding_cost_nanos += lookup.get("embedding_cost_nanos", 0)
            if lookup.get("verified"):
                tally.verified[lookup["verified"]] += 1
                tally.verify_cost_nanos += lookup.get("verify_cost_nanos", 0)
            if lookup.get("agreed") is not None and lookup.get("similarity") is not None:
                tally.judged.append((lookup["similarity"], lookup["agreed"]))
    return [_summary(policy, tally, max_wrong_rate) for policy, tally in sorted(tallies.items())]


def _summary(policy: str, tally: _Tally, max_wrong_rate: float | None) -> dict:
    by_band: dict[int, list[bool]] = defaultdict(list)
    for similarity, agreed in tally.judged:
        by_band[min(math.floor(similarity / BAND + 1e-9), _BANDS - 1)].append(agreed)
    bands, above = [], []
    for band in sorted(by_band, reverse=True):
        inside = by_band[band]
        above += inside
        bands.append({"from": round(band * BAND, 2), "to": round((band + 1) * BAND, 2), "candidates": len(inside),
                      "agreed": sum(inside), "precision": sum(inside) / len(inside),
                      "threshold_hit_rate": len(above) / tally.lookups, "threshold_precision": sum(above) / len(above)})
    summary = {"policy": policy, "mode": "shadow" if tally.shadow else "on", "lookups": tally.lookups,
               "hits": tally.hits, "hit_rate": tally.hits / tally.lookups, "results": dict(tally.results),
               "embedding_cost_nanos": tally.embedding_cost_nanos, "verified": dict(tally.verified),
               "verify_cost_nanos": tally.verify_cost_nanos, "bands": bands}
    curve = calibration.shadow_curve(tally.judged, tally.lookups)
    if max_wrong_rate is not None and any(point.served >= calibration.MIN_SERVED for point in curve):
        point = calibration.operating_point(curve, max_wrong_rate, "shadow")
        summary["operating_point"] = {
            "max_wrong_rate": max_wrong_rate, "threshold": point.threshold, "reachable": point.reachable,
            "precision": point.expected.precision, "hit_rate": point.expected.hit_rate,
            "verdicts": len(tally.judged), "enough": len(tally.judged) >= calibration.MIN_VERDICTS}
    return summary


def report_table(report: list[dict]) -> str:
    if not report:
        return "no lookup in this window"
    parts = []
    for policy in report:
        others = ", ".join(f"{name} {count}" for name, count in sorted(policy["results"].items()))
        parts.append(f"{policy['policy']} ({policy['mode']}): {policy['lookups']} lookups, {policy['hits']} hits "
                     f"({policy['hit_rate']:.1%}); {others}; embeddings ${format_usd(policy['embedding_cost_nanos'])}")
        if policy["verified"]:
            verdicts = ", ".join(f"{name} {count}" for name, count in sorted(policy["verified"].items()))
            parts.append(f"  verifier: {verdicts}; ${format_usd(policy['verify_cost_nanos'])}")
        if "operating_point" in policy:
            point = policy["operating_point"]
            parts.append(f"  max_wrong_rate {point['max_wrong_rate']}: threshold {point['threshold']:.3f}, precision "
                         f"{point['precision']:.1%}, {point['hit_rate']:.1%} of lookups served"
                         + ("" if point["reachable"] else " (the precision asked for is not reached)")
                         + ("" if point["enough"] else f" ({point['verdicts']} verdicts: a restart picks it from "
                                                       f"{calibration.MIN_VERDICTS} on)"))
        if policy["bands"]:
            header = ("similarity", "candidates", "agreed", "precision", "threshold here: hit rate", "precision")
            lines = [(f"{b['from']:.2f}-{b['to']:.2f}", str(b["candidates"]), str(b["agreed"]), f"{b['precision']:.1%}",
                      f"{b['threshold_hit_rate']:.1%}", f"{b['threshold_precision']:.1%}") for b in policy["bands"]]
            parts.append(render_table(header, lines))
    return "\n\n".join(parts)
