"""Semantic lookups (semantic_cache, answers): the nearest stored questions, the guard, then maybe a verifier.

The operating point (proxy/lookup/calibration.py) is set once, when the policy is built: a configured
threshold; else the threshold whose measured precision meets max_wrong_rate, on the operator's shadow verdicts
when there are enough of them, else on the guard model's calibration when it was measured with this
embedder; else DEFAULT_THRESHOLD. The checks that refuse a candidate are the guard model's.

The most similar candidate the guard lets through is served when it reaches the threshold. With a verifier,
a candidate between verify.min_similarity and the threshold (or any candidate, with when: always) is served
only when the verifier says it asks the same thing; a verifier that fails makes the lookup a miss.
"""

import asyncio
import logging

import numpy as np

from proxy.config import ConfigError
from proxy.exchange import Exchange
from proxy.lookup import calibration, guard
from proxy.lookup.entries import Entry
from proxy.lookup.policy import LookupPolicy, embed
from proxy.lookup.settings import DEFAULT_MAX_WRONG_RATE, DEFAULT_THRESHOLD
from proxy.lookup.trace import LookupTrace
from proxy.lookup.verifier import VerifierFailed

CANDIDATES = 5  # the nearest few: the most similar may be a near miss the guard refuses
log = logging.getLogger("thriftgate.lookup")


class SimilarityLookup(LookupPolicy):
    def __init__(self, settings, services) -> None:
        super().__init__(settings, services)
        self._lookups.embedder(settings.embedder)  # one not running is refused here (a reload), not per request
        model = calibration.load(settings.guard_model or calibration.SHIPPED)
        self._checks = model.checks
        self._point = _operating_point(self._name, settings, model, self._lookups)
        self._verifier = self._lookups.verifier(settings.verify) if settings.verify is not None else None
        verify = settings.verify
        self._floor = verify.min_similarity if verify is not None else self._point.threshold
        if verify is not None and verify.when == "always":
            self._direct = float("inf")  # every candidate is verified
        else:
            self._direct = self._point.threshold
        report = {"threshold": self._point.threshold, "basis": self._point.basis,
                  "reachable": self._point.reachable, "checks": list(self._checks), "guard_model": model.path,
                  "verify": None if verify is None else {"with": verify.model, "when": verify.when,
                                                         "min_similarity": verify.min_similarity}}
        if self._point.expected is not None:
            report |= {"expected_precision": self._point.expected.precision,
                       "expected_hit_rate": self._point.expected.hit_rate}
        self.operating = report  # published when the chain serves (a refused reload's never is)
        level = logging.INFO if self._point.reachable else logging.WARNING
        log.log(level, "lookup policy %s operates at %s%s", self._name, self._point.describe(),
                "" if verify is None else f"; verifier {verify.model} from similarity {verify.min_similarity}")

    def _partition(self, ex: Exchange, trace: LookupTrace) -> str:
        raise NotImplementedError

    async def _find(self, ex: Exchange, trace: LookupTrace, now: float) -> Entry | None:
        question = trace.key.question
        if not question.strip():
            return None  # the conversation does not end with a user's question
        trace.vector = await embed(self._lookups, self._settings.embedder, question, trace)
        if not self._settings.reads:
            return None
        # In shadow mode candidates below the threshold are recorded too: the report shows every band.
        floor = min(self._settings.shadow_floor, self._floor) if self._shadow else self._floor
        asked = guard.facts(question)
        nearest = await self._lookups.entries.nearest(self._partition(ex, trace), trace.vector, CANDIDATES, now)
        for entry, similarity in nearest:
            if similarity < floor:
                break
            if entry.kind != self.KIND or not self._fits(ex, entry):
                continue
            refused = guard.refusal(asked, guard.facts(entry.question), self._checks)
            if refused is not None:
                trace.refused = trace.refused or refused
                continue
            trace.similarity, trace.candidate = similarity, entry
            if similarity >= self._direct:
                return entry
            if self._verifier is None or similarity < self._settings.verify.min_similarity:
                return None
            return entry if await self._verified(question, entry, trace) else None
        return None

    async def _verified(self, question: str, entry: Entry, trace: LookupTrace) -> bool:
        """Only the best candidate is verified: one call at most per lookup."""
        try:
            verdict = await self._verifier.verify(question, entry.question)
        except VerifierFailed:
            trace.verified = "failed"
            self._lookups.verified(self._name, "failed", False)
            return False
        trace.verified = "same" if verdict.same else "different"
        trace.verify_tokens += verdict.tokens
        trace.verify_cost_nanos += verdict.cost_nanos
        self._lookups.verified(self._name, trace.verified, verdict.remembered)
        return verdict.same

    async def _agrees(self, trace: LookupTrace, stored: Entry, fresh: str) -> bool:
        """Two answers agree when their embeddings are at least `agreement` alike."""
        if not fresh.strip() or not stored.text().strip():
            return fresh.strip() == stored.text().strip()
        name = self._settings.embedder
        ours, theirs = await asyncio.gather(embed(self._lookups, name, stored.text(), trace),
                                            embed(self._lookups, name, fresh, trace))
        return float(np.dot(ours, theirs)) >= self._settings.agreement


def _operating_point(name: str, settings, model: calibration.GuardModel, lookups) -> calibration.OperatingPoint:
    if settings.threshold is not None:
        return calibration.OperatingPoint(settings.threshold, None, "configured")
    rate = settings.max_wrong_rate or DEFAULT_MAX_WRONG_RATE
    shadow = lookups.shadow.get(name)
    if shadow is not None and len(shadow.judged) >= calibration.MIN_VERDICTS:
        curve = calibration.shadow_curve(list(shadow.judged), shadow.lookups)
        if any(point.served >= calibration.MIN_SERVED for point in curve):
            return calibration.operating_point(curve, rate, "shadow")
    if lookups.embedder(settings.embedder).identity == model.embedder_identity:
        return calibration.operating_point(model.curve, rate, "shipped" if model.path == str(calibration.SHIPPED)
                                           else "guard_model")
    if settings.max_wrong_rate is not None:
        raise ConfigError(
            f"policy {name}: max_wrong_rate needs a calibration for the embedder '{settings.embedder}': the guard "
            f"model ({model.path}) was measured with {model.embedder}. Set threshold, give a guard_model measured "
            f"with it, or run the policy in shadow mode until {calibration.MIN_VERDICTS} verdicts are recorded")
    return calibration.OperatingPoint(DEFAULT_THRESHOLD, None, "default")
