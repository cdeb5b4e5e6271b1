"""The ledger rows of failed attempts: one for each failed attempt that another follows (`<request id>.<n>`,
parent_id the request's), priced if the upstream billed it, and settled against the budgets beside the request's
own hold.
"""

import copy

from proxy.accounting.usage import Usage
from proxy.exchange import Exchange
from proxy.routing.outcomes import Failure
from proxy.stages.budget import Budgets
from proxy.stages.record import Recorder
from proxy.stages.settle import Settler


class FailedAttemptRows:
    def __init__(self, settler: Settler, recorder: Recorder, budgets: Budgets | None) -> None:
        self._settler = settler
        self._recorder = recorder
        self._budgets = budgets

    async def record(self, ex: Exchange, failure: Failure) -> None:
        """A failed attempt another follows: a ledger row of its own, linked to the request, priced if billed."""
        if failure.recorded or failure.deployment is None:
            return
        failure.recorded = True
        row = copy.copy(ex)
        row.request_id, row.parent_id, row.attempts = f"{ex.request_id}.{failure.number}", ex.request_id, failure.number
        row.upstream, row.status, row.error_code = failure.deployment, failure.status, failure.code
        row.started, row.finished = failure.started, failure.ended
        row.upstream_started, row.upstream_seconds = failure.started, failure.ended - failure.started
        row.received_at = ex.received_at + (failure.started - ex.started)
        row.usage, row.cost_nanos, row.settled, row.output_text = billed(ex, failure), None, False, []
        row.savings, row.policy_marks, row.applied, row.lookups = [], {}, [], {}
        row.side_cost_nanos, row.reservation, row.early_response = 0, None, None
        row.fallback_from = row.fallback_reason = None
        self._settler.settle(row)
        if row.cost_nanos and self._budgets is not None:
            await self._budgets.settle(row)  # billed beside the request's own hold
        self._recorder.record_attempt(row)


def billed(ex: Exchange, failure: Failure) -> Usage | None:
    """An attempt the upstream accepted and then failed: its prompt is counted as billed (an estimate)."""
    if not failure.billed_prompt:
        return None
    try:
        return Usage(prompt_tokens=ex.prompt_tokens(), estimated=True)
    except ValueError:
        return None
