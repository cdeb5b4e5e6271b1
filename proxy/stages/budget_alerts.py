"""Budget alerts: a webhook message when a usd budget's spend passes each share configured in its `alerts`.

Checked against what the store says the budget's window has settled (stages/budget.py: in process with the
memory store; with Redis, the fleet's total each time this replica writes a batch of settlements or renews
a lease, so the replica writing last sees every replica's spend), with no I/O on the request's path: a share
newly passed in this window starts a task. The task takes the once-only mark
`budget-alert:<counter>:<share>` in the store (SET NX on Redis: the whole fleet sends one message, whichever
replica gets there first), then posts Slack-compatible JSON (`text`, plus the figures under `thriftgate`),
retrying with backoff. Every outcome is logged and counted (thriftgate_budget_alerts_total); the URL, a
secret, never is. With Redis unreachable the replica sends anyway: a duplicate beats a silent budget.
"""

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp

from proxy.accounting.metrics import Metrics
from proxy.accounting.money import format_usd
from proxy.control.alerting_config import AlertingConfig
from proxy.stages.budget_rules import Rule
from proxy.store import Store, StoreUnavailable

log = logging.getLogger("thriftgate.alerts")
MAX_BACKOFF_SECONDS = 60.0
MARK_MARGIN_SECONDS = 86400  # a mark outlives its window by a day: a late settle cannot alert twice


class BudgetAlerts:
    def __init__(self, config: AlertingConfig, store: Store, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._passed: dict[str, tuple[str, float]] = {}  # scope/window -> (window id, highest share handled)
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def observe(self, rule: Rule, window_id: str, window_end: float, level: int) -> None:
        """`level`: what the budget's window has settled. Once closed (the replica stops, after writing its
        last settlements), nothing more is sent: a share only a later write passes is the next writer's."""
        if self._closed:
            return
        key = f"{rule.scope}|{rule.window}"
        seen_window, handled = self._passed.get(key, ("", 0.0))
        if seen_window != window_id:
            handled = 0.0  # a new window: every share may be passed again
        ratio = level / rule.limit
        due = [share for share in rule.alerts if handled < share <= ratio]
        if not due:
            return
        self._passed[key] = (window_id, due[-1])
        task = asyncio.ensure_future(self._alert(rule, window_id, window_end, level, due))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _alert(self, rule: Rule, window_id: str, window_end: float, level: int, shares: list[float]) -> None:
        ttl = int(window_end - self._clock()) + MARK_MARGIN_SECONDS
        for share in shares:  # lowest first: the messages arrive in order
            mark = f"budget-alert:usd:{rule.window}:{window_id}:{rule.scope}:{share:g}"
            try:
                first = await self._store.mark_once(mark, ttl)
            except StoreUnavailable:
                log.warning("budget alert %s at %s: the store is unreachable, so sent without the fleet-wide "
                            "once-only mark (another replica may send it too)", rule.scope, f"{share:g}")
                first = True
            if first:
                await self._send(rule, window_id, window_end, level, share)

    async def _send(self, rule: Rule, window_id: str, window_end: float, level: int, share: float) -> None:
        payload = _message(rule, window_id, window_end, level, share)
        attempts = self._config.retries + 1
        for attempt in range(1, attempts + 1):
            problem = await self._post(payload)
            if problem is None:
                log.info("budget alert sent: %s (%s, window %s) passed %s", rule.scope, rule.window, window_id,
                         f"{share:.0%}")
                self._metrics.budget_alert(rule.scope, share, "sent")
                return
            if attempt == attempts:
                break
            delay = min(self._config.backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
            log.warning("budget alert for %s at %s: webhook attempt %d of %d failed (%s); retrying in %.1fs",
                        rule.scope, f"{share:.0%}", attempt, attempts, problem, delay)
            await asyncio.sleep(delay)
        log.error("budget alert for %s at %s not delivered after %d attempts (%s)", rule.scope, f"{share:.0%}",
                  attempts, problem)
        self._metrics.budget_alert(rule.scope, share, "failed")

    async def _post(self, payload: dict) -> str | None:
        """None when the webhook took it; else what went wrong (never the URL: it is a secret)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._config.timeout_seconds))
        try:
            async with self._session.post(self._config.webhook_url, json=payload) as response:
                await response.read()
                return None if response.status < 300 else f"HTTP {response.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return type(exc).__name__

    async def close(self) -> None:
        """Gives alerts on their way one attempt's time to arrive, stops those still retrying (logged), then
        the HTTP client."""
        self._closed = True
        if self._tasks:
            _, unsent = await asyncio.wait(list(self._tasks), timeout=self._config.timeout_seconds)
            for task in unsent:
                task.cancel()
            if unsent:
                await asyncio.gather(*unsent, return_exceptions=True)
                log.warning("stopped with %d budget alert(s) still being sent", len(unsent))
        if self._session is not None:
            await self._session.close()


def _message(rule: Rule, window_id: str, window_end: float, level: int, share: float) -> dict:
    resets = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(window_end))
    used, limit = format_usd(level), format_usd(rule.limit)
    text = (f":warning: thriftgate: budget {rule.scope} ({rule.window}) has passed {share:.0%}: "
            f"${float(used):,.2f} of ${float(limit):,.2f} spent or reserved. It resets at {resets}.")
    return {"text": text, "thriftgate": {
        "scope": rule.scope, "window": rule.window, "window_id": window_id, "threshold": share,
        "used_usd": used, "limit_usd": limit, "used_ratio": round(level / rule.limit, 6), "resets_at": resets}}
