"""Budget alerts: a webhook message once per threshold per window, fleet-wide once with two replicas on Redis,
retried with backoff, never in a request's way; the used-ratio gauge for Alertmanager."""

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from proxy.appkeys import METRICS
from proxy.config import ConfigError
from proxy.config_loading import validate
from tests.budgets.test_budgets import chat, request_cost, usd
from tests.conftest import RunningProxy, StartProxy
from tests.shared import REDIS_URL, FakeClock

WEBHOOK_ENV = "THRIFTGATE_TEST_WEBHOOK"
ALERTS = [{"at": 0.8}, {"at": 0.95}, {"at": 1.0}]
SERVED = 20  # the budget is exactly this many requests: the 16th passes 80%, the 19th 95%, the 20th 100%


class Receiver:
    """A webhook that records what it is sent; it can fail the first N posts, or hold every answer."""

    def __init__(self, failures: int = 0) -> None:
        self.posts: list[dict] = []
        self.failures = failures
        self.hold = asyncio.Event()
        self.hold.set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        payload = await request.json()
        await self.hold.wait()
        if self.failures:
            self.failures -= 1
            return web.Response(status=500, text="try later")
        self.posts.append(payload)
        return web.Response(text="ok")

    async def __aenter__(self) -> "Receiver":
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.hold.set()
        await self._runner.cleanup()


def settings(cost: int, tmp_path: Path, index: int, store: dict, **alerting) -> dict:
    return {"ledger": {"path": str(tmp_path / f"ledger-{index}.db")}, "store": store,
            "budgets": [{"scope": "global", "usd": usd(SERVED * cost), "window": "day", "alerts": ALERTS}],
            "alerting": {"webhook_url_env": WEBHOOK_ENV, "timeout_seconds": 2, "backoff_seconds": 0.01, **alerting}}


async def stop(*proxies: RunningProxy) -> None:
    """As a replica stops: alerts on their way are given their time (BudgetAlerts.close)."""
    for proxy in proxies:
        await proxy.runner.cleanup()


async def test_two_replicas_on_redis_send_each_threshold_once(
    start_proxy: StartProxy, tmp_path: Path, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cost = request_cost()
    redis = {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": redis_prefix}
    async with Receiver() as receiver:
        monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
        replicas = [await start_proxy(**settings(cost, tmp_path, i, redis)) for i in range(2)]
        # Alternate replicas, so that each sees the other's spend pass a threshold; the last four find it spent.
        statuses = [(await chat(replicas[n % 2]))[0] for n in range(SERVED + 4)]
        assert statuses.count(200) == SERVED and statuses.count(429) == 4
        ratios = [_gauge(replica) for replica in replicas]
        await stop(*replicas)  # waits for alerts on their way: a second message would have arrived by now
    assert [post["thriftgate"]["threshold"] for post in receiver.posts] == [0.8, 0.95, 1.0]
    first = receiver.posts[0]
    assert first["text"].startswith(":warning: thriftgate: budget global (day) has passed 80%")
    assert first["thriftgate"]["limit_usd"] == f"{SERVED * cost / 10**9:.9f}"
    # The fleet's settled spend when 80% was first seen: whole requests (never a hold or a lease), the 16th
    # request's as a rule (more when a replica's batch carried two settlements).
    used = round(float(first["thriftgate"]["used_usd"]) * 10**9)
    assert used % cost == 0 and SERVED * 0.8 <= used // cost <= SERVED and first["thriftgate"]["window"] == "day"
    # Each replica shows the fleet's settled spend as Redis last told it: each asked Redis for a lease for its
    # last refused request, after the other had written the 20th, so both show all of it.
    assert ratios == [1.0, 1.0]


async def test_a_share_is_alerted_on_the_fleets_settled_spend_never_on_leases(
    start_proxy: StartProxy, tmp_path: Path, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half of a 100-request budget: one replica spends 45 (its lease on the headroom is several requests more),
    the other 4: no alert at 49%. A second pair of replicas on the same Redis spends the 50th: the replica that
    passes the share by the fleet's spend sends it, though nearly all of that spend was another's."""
    cost = request_cost()
    redis = {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": redis_prefix}

    def half(index: int) -> dict:
        config = settings(cost, tmp_path, index, redis)
        config["budgets"] = [{"scope": "global", "usd": usd(100 * cost), "window": "day", "alerts": [{"at": 0.5}]}]
        return config

    async with Receiver() as receiver:
        monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
        first, second = [await start_proxy(**half(i)) for i in range(2)]
        assert [(await chat(first))[0] for _ in range(45)] + [(await chat(second))[0] for _ in range(4)] == [200] * 49
        await stop(first, second)  # alerts on their way would arrive now
        assert receiver.posts == []
        later = [await start_proxy(**half(i)) for i in range(2, 4)]
        assert (await chat(later[1]))[0] == 200
        await stop(*later)
    [post] = receiver.posts
    assert (post["thriftgate"]["threshold"], post["thriftgate"]["used_ratio"]) == (0.5, 0.5)


async def test_a_new_window_alerts_again(
    start_proxy: StartProxy, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cost = request_cost()
    async with Receiver() as receiver:
        monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
        proxy = await start_proxy(clock=clock, **settings(cost, tmp_path, 0, {"backend": "memory"}))
        for _ in range(17):
            assert (await chat(proxy))[0] == 200
        clock.advance(60)  # midnight: a new day, a new window
        for _ in range(16):
            assert (await chat(proxy))[0] == 200
        await stop(proxy)
    assert [(p["thriftgate"]["window_id"], p["thriftgate"]["threshold"]) for p in receiver.posts] == [
        ("20250331", 0.8), ("20250401", 0.8)]


async def test_a_failing_webhook_is_retried_with_backoff(
    start_proxy: StartProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cost = request_cost()
    async with Receiver(failures=2) as receiver:
        monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
        proxy = await start_proxy(**settings(cost, tmp_path, 0, {"backend": "memory"}))
        for _ in range(16):
            await chat(proxy)
        await stop(proxy)
    assert [post["thriftgate"]["threshold"] for post in receiver.posts] == [0.8]
    retries = [r.getMessage() for r in caplog.records if "webhook attempt" in r.getMessage()]
    assert len(retries) == 2 and "HTTP 500" in retries[0] and "retrying in 0.0s" in retries[0]
    assert receiver.url not in caplog.text  # the URL is a secret
    assert 'thriftgate_budget_alerts_total{result="sent",scope="global",threshold="0.8"} 1.0' in \
        proxy.app[METRICS].render().decode()


async def test_a_webhook_that_hangs_never_holds_up_a_request(
    start_proxy: StartProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cost = request_cost()
    async with Receiver() as receiver:
        receiver.hold.clear()  # every post waits until the test lets it go
        monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
        proxy = await start_proxy(**settings(cost, tmp_path, 0, {"backend": "memory"}, retries=0, timeout_seconds=0.3))
        statuses = [(await chat(proxy))[0] for _ in range(SERVED)]  # would hang here if a request waited on it
        assert statuses == [200] * SERVED and receiver.posts == []
        await stop(proxy)
    failed = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(failed) == 3 and "after 1 attempts (TimeoutError)" in failed[0]


@pytest.mark.parametrize(("changes", "message"), [
    ({"budgets": [{"scope": "global", "usd": 5, "window": "day", "alerts": [{"at": 0.8}]}]},
     "budgets[0].alerts: alerts need alerting.webhook_url_env"),
    ({"budgets": [{"scope": "global", "requests_per_minute": 5, "alerts": [{"at": 0.8}]}],
      "alerting": {"webhook_url_env": WEBHOOK_ENV}}, "alerts need a usd budget"),
    ({"budgets": [{"scope": "global", "usd": 5, "window": "day", "alerts": [{"at": 0.8}, {"at": 0.8}]}],
      "alerting": {"webhook_url_env": WEBHOOK_ENV}}, "each share (at) once"),
    ({"budgets": [{"scope": "global", "usd": 5, "window": "day", "alerts": [{"at": 0}]}],
      "alerting": {"webhook_url_env": WEBHOOK_ENV}}, "budgets[0].alerts[0].at: Input should be greater than 0"),
    ({"alerting": {"webhook_url_env": "THRIFTGATE_TEST_UNSET_WEBHOOK"}}, "$THRIFTGATE_TEST_UNSET_WEBHOOK, which is not set"),
])
def test_alert_config_mistakes_are_named(changes: dict, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WEBHOOK_ENV, "https://hooks.example/services/T0/B0/X")
    monkeypatch.delenv("THRIFTGATE_TEST_UNSET_WEBHOOK", raising=False)
    with pytest.raises(ConfigError) as failure:
        validate(changes)
    assert message in str(failure.value)


def _gauge(proxy: RunningProxy) -> float:
    for metric in proxy.app[METRICS].budget_used_ratio.collect():
        for sample in metric.samples:
            if sample.labels == {"scope": "global", "window": "day"}:
                return sample.value
    raise AssertionError("no thriftgate_budget_used_ratio for global")
