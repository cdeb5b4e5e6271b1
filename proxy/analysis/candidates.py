"""Candidate policies (`whatif --policies FILE`) re-evaluated on what the ledger recorded of each request.

A condition is decided from recorded facts, or left undecided when the ledger does not hold its fact: the
prompt's text (last_message_regex), or a column an older ledger lacks. A policy's effect is exact where it
only changes the price of the tokens used (route: the same tokens at the other model's price; deny: nothing
paid), measured where it changes how many tokens there are (concise, cap: the holdout effect recorded for
a policy of the same name; cascade: what its tries really cost against the model asked for), and not
estimable otherwise (a lookup's hits depend on a store the ledger does not hold).
"""

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from proxy.accounting.savings import MIN_SAMPLES, savings_report
from proxy.analysis.records import tags_of
from proxy.policies.base import MatchConfig, PolicyConfig

_NOT_KEPT = "the ledger keeps no prompt text"
_OLD_ROW = "the request was recorded before thriftgate kept this fact"
MEASURED_TYPES = frozenset({"concise", "cap", "cascade"})


@dataclass(frozen=True, slots=True)
class Measured:
    """What a policy of this name did to recorded traffic: cost with it / cost without it."""

    ratio: float
    basis: str


@dataclass(frozen=True, slots=True)
class Effect:
    """One candidate policy on one request: exact (route, deny), measured (factor) or not estimable."""

    policy: str
    kind: str  # route | deny | factor | unknown
    holdout: float = 0.0
    model: str = ""  # route: the model it sends to
    ratio: float = 1.0  # factor: cost multiplier
    basis: str = ""


def decide(match: MatchConfig, row: dict) -> bool | str:
    """True or False when the recorded facts decide the match; else the reason (a str) they cannot."""
    undecided: str | None = None
    for verdict in _verdicts(match, row):
        if verdict is False:
            return False
        if isinstance(verdict, str):
            undecided = undecided or verdict
    return undecided or True


def _verdicts(c: MatchConfig, row: dict) -> Iterable[bool | str]:
    if c.models is not None:
        yield any(fnmatch.fnmatchcase(row["requested_model"] or "", pattern) for pattern in c.models)
    if c.endpoints is not None:
        yield row["endpoint"] in c.endpoints
    if c.teams is not None:
        yield row["team"] in c.teams
    if c.keys is not None:
        yield row["key_id"] in c.keys
    if c.stream is not None:
        yield bool(row["stream"]) == c.stream
    if c.tags is not None:
        yield not tags_of(row).isdisjoint(c.tags)
    facts_kept = row.get("has_tools") is not None  # the request facts came with one another
    limit = row.get("max_output_tokens")
    for flag, column in ((c.has_tools, "has_tools"), (c.has_images, "has_images"),
                         (c.has_response_format, "has_response_format")):
        if flag is not None:
            yield f"{column}: {_OLD_ROW}" if row.get(column) is None else bool(row[column]) == flag
    prompt = row["prompt_tokens"]  # as billed: after the edits of policies before this one
    if c.min_prompt_tokens is not None:
        yield prompt >= c.min_prompt_tokens
    if c.max_prompt_tokens is not None:
        yield prompt <= c.max_prompt_tokens
    for bound, test in ((c.min_max_tokens, lambda lim, b: lim >= b), (c.max_max_tokens, lambda lim, b: lim <= b),
                        (c.min_prompt_to_output_ratio, lambda lim, b: prompt >= b * lim),
                        (c.max_prompt_to_output_ratio, lambda lim, b: prompt <= b * lim)):
        if bound is not None:
            if not facts_kept:
                yield f"the output limit: {_OLD_ROW}"
            else:  # as live: a request that set no output limit does not match
                yield limit is not None and test(limit, bound)
    if c.last_message_regex is not None:
        yield f"last_message_regex: {_NOT_KEPT}"


def measure(rows: Iterable[dict], names: set[str], since: float, until: float) -> dict[str, Measured]:
    """The recorded effect of the policies named `names`: holdout (concise, cap) or what cascades paid."""
    recorded = [row for row in rows if row.get("policies") and not names.isdisjoint(orjson.loads(row["policies"]))]
    measured = {}
    for entry in savings_report(recorded, since=since, until=until):
        name, treated, held = entry["policy"], entry["treated_requests"], entry["held_out_requests"]
        if name not in names or not treated:
            continue
        paid = entry["treated_mean_cost_nanos"] * treated
        if entry["counterfactual_saved_nanos"] and paid + entry["counterfactual_saved_nanos"] > 0:
            ratio = paid / (paid + entry["counterfactual_saved_nanos"])
            measured[name] = Measured(ratio, f"measured: {name} paid x{ratio:.3f} of the asked-for model's price "
                                             f"on {treated} recorded requests")
        elif min(treated, held) >= MIN_SAMPLES and entry["held_out_mean_cost_nanos"]:
            held_mean = entry["held_out_mean_cost_nanos"]
            ratio = entry["treated_mean_cost_nanos"] / held_mean
            low, high = (1 - bound / held_mean for bound in reversed(entry["saving_ci95_nanos"]))
            measured[name] = Measured(ratio, f"holdout estimate: {name} cost x{ratio:.3f} (95% CI {low:.3f}-{high:.3f}) "
                                             f"on {treated} treated / {held} held-out requests")
    return measured


def effects(policies: Iterable[PolicyConfig], row: dict, measured: dict[str, Measured]) -> list[Effect]:
    """What each candidate policy would do to this recorded request, in chain order."""
    marks = orjson.loads(row["policies"]) if row.get("policies") else {}
    out = []
    for policy in policies:
        if policy.mode != "on":
            continue  # shadow and off change nothing
        verdict = decide(policy.match, row)
        if verdict is False:
            continue
        if isinstance(verdict, str):
            out.append(Effect(policy.name, "unknown", basis=f"not estimable: {policy.name} matches on {verdict}"))
            break
        if marks.get(policy.name, {}).get("mark") == "treated":
            continue  # it already ran on this request: its effect is in what was paid
        out.append(_effect(policy, measured))
        if out[-1].kind == "unknown":
            break
    return out


def _effect(policy: PolicyConfig, measured: dict[str, Measured]) -> Effect:
    name, holdout = policy.name, policy.holdout
    if policy.type == "route":
        return Effect(name, "route", holdout, model=policy.to, basis=f"exact: the same tokens at {policy.to}'s price")
    if policy.type == "deny":
        return Effect(name, "deny", holdout, basis="exact: refused, nothing paid")
    if policy.type in MEASURED_TYPES:
        found = measured.get(name)
        if found is not None:
            return Effect(name, "factor", holdout, ratio=found.ratio, basis=found.basis)
        needs = "its treated requests" if policy.type == "cascade" else \
            f"{MIN_SAMPLES} treated and {MIN_SAMPLES} held-out requests"
        return Effect(name, "unknown", basis=f"not estimable: {name} ({policy.type}) changes how many tokens are used, "
                                             f"and the ledger has no measurement of it (needs {needs} recorded "
                                             f"under this name)")
    return Effect(name, "unknown", basis=f"not estimable: what {name} ({policy.type}) would answer is not in the ledger")


def priced_models(policies: Iterable[PolicyConfig]) -> set[str]:
    """Models the candidates send work to: they must have a price."""
    return {policy.to for policy in policies if policy.type == "route" and policy.mode == "on"}

