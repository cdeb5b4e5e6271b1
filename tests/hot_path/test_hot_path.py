"""What the per-request shortcuts must keep: the ledger's row values in column order, each request's UTC day in
the fleet's totals, the handler task tracked in whatever loop serves it, a metric series only once it has a
value, start-up's objects out of the collector's way once the server listens, the fleet's totals summed
per group before they are spelled out as fields, a Redis sync that touches only the counters it is about, and
budget plans laid out once per rule set and window."""

import asyncio
import dataclasses
import gc
import os
import random
import signal
from collections import Counter
from types import SimpleNamespace

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy import serving
from proxy.accounting.metrics import Metrics
from proxy.accounting.pricing import PriceTable, default_pricing_path
from proxy.accounting.spend_record import COLUMNS, FIELD_NAMES, SpendRecord, row_values
from proxy.accounting.usage import Usage
from proxy.control.config import StoreConfig
from proxy.in_flight import InFlight
from proxy.stages.budget import Budgets
from proxy.stages.budget_plan import _KEPT_LAYOUTS, Planner
from proxy.store import SWEEP_SECONDS, Charge, Settlement, Totals
from proxy.store.leases import LeaseBook
from proxy.store.redis_sync import apply_result, distrust, sync_call


def test_a_ledger_row_is_every_column_in_order() -> None:
    values = {name: f"value-{i}" for i, name in enumerate(FIELD_NAMES)}  # all distinct: an order slip shows
    record = SpendRecord(**values)
    assert row_values(record) == dataclasses.astuple(record) == tuple(values[name] for name in COLUMNS)


class SettlementsKept:
    shared = True

    def __init__(self) -> None:
        self.settled = []

    def on_settled(self, listener) -> None:
        pass

    async def settle(self, settlement) -> None:
        self.settled.append(settlement)


async def test_the_fleet_totals_date_each_request_by_its_own_utc_day() -> None:
    store = SettlementsKept()
    budgets = Budgets((), store=store, store_config=StoreConfig(), prices=PriceTable.load([default_pricing_path()], {}),
                      metrics=Metrics(CollectorRegistry(), ()), default_max_output_tokens=100)
    midnight = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    for at in (midnight - 0.5, midnight, midnight + 86_399.9, midnight - 1):  # the last one late, a day back
        ex = SimpleNamespace(reservation=None, usage=Usage(prompt_tokens=1), cost_nanos=5, status=200, parent_id=None,
                             model="gpt-4o-mini", received_at=at, team=None, key_id=None, key_budget_nanos=None,
                             request_id=f"r{at}")
        await budgets.settle(ex)
    assert [s.totals.day for s in store.settled] == ["2025-12-31", "2026-01-01", "2026-01-01", "2025-12-31"]


def test_the_handler_task_is_tracked_in_each_loop_that_serves() -> None:
    in_flight = InFlight()

    async def handler() -> None:
        with in_flight.tracked():
            assert list(in_flight._tasks) == [asyncio.current_task()]
        assert len(in_flight) == 0

    asyncio.run(handler())
    asyncio.run(handler())  # a new loop: the task is found in it, not looked up in the last one


def test_an_upstream_series_shows_once_it_has_a_value() -> None:
    metrics = Metrics(CollectorRegistry(), ["gpt-4o-mini"])
    ex = SimpleNamespace(model="gpt-4o-mini", endpoint="chat", status=502, latency_seconds=0.01,
                         overhead_seconds=0.001, upstream=SimpleNamespace(name="fake"), upstream_started=1.0,
                         upstream_seconds=None, time_to_first_token=None, usage=None, cost_nanos=None, team=None,
                         tags=frozenset())
    metrics.observe(ex)
    text = metrics.render().decode()
    assert 'thriftgate_upstream_requests_total{status="502",upstream="fake"} 1.0' in text
    assert 'thriftgate_requests_total{endpoint="chat",model="gpt-4o-mini",status="502"} 1.0' in text
    assert 'upstream_duration_seconds_count{upstream="fake"}' not in text
    ex.upstream_seconds = 0.2
    metrics.observe(ex)
    text = metrics.render().decode()
    assert 'thriftgate_upstream_requests_total{status="502",upstream="fake"} 2.0' in text
    assert 'thriftgate_upstream_duration_seconds_count{upstream="fake"} 1.0' in text


def test_once_the_server_listens_start_up_is_frozen_and_young_collections_are_rarer() -> None:
    frozen = []

    def announce() -> None:
        frozen.append((gc.get_freeze_count(), gc.get_threshold()[0]))
        os.kill(os.getpid(), signal.SIGTERM)  # serve stops on it

    sockets = serving.bind("127.0.0.1", 0)
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        asyncio.run(serving.serve(web.Application(), sockets, in_flight=InFlight(), grace=0.1, announce=announce))
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    assert len(frozen) == 1 and frozen[0][0] > 0 and frozen[0][1] == serving.YOUNG_GC_THRESHOLD


def test_a_batch_of_fleet_totals_is_the_sum_of_each_requests_fields() -> None:
    rng = random.Random(13)
    book, expected = LeaseBook(60), {}
    for i in range(300):
        totals = Totals(rng.choice(["2026-01-01", "2026-01-02"]), rng.choice(["gpt-4o", "gpt-4o-mini"]),
                        rng.choice([None, "support"]), rng.choice([None, "k1", "support"]), rng.randint(0, 50),
                        rng.randint(0, 5), rng.randint(0, 3), rng.randint(0, 2), rng.choice([None, 0, 5, 100]),
                        rng.randint(0, 1))
        book.settle(Settlement(f"r{i}", 1.0, (), totals))
        expected.setdefault(totals.day, Counter()).update(totals.increments())
    assert book.next_batch().totals == expected


class _NotToBeWalked(dict):
    """The book's counters, for a sync that must not go through all of them."""

    def items(self):
        raise AssertionError("the sync walked every counter")

    values = items


def _leased_book(counters: int, now: float, lease_seconds: float) -> LeaseBook:
    """A replica that knows many counters (a budget per key), each leased and trusted for a while."""
    book = LeaseBook(60)
    for i in range(counters):
        charge = Charge(f"usd:day:20261207:key:k{i}", 10, 10**9, 90_000)
        book.reserve(f"r{i}", (charge,), now, now + 60)
        counter = book.counters[charge.counter]
        counter.lease, counter.trusted_until = 1000, now + lease_seconds * 0.75
        book.renewed_until(counter.trusted_until, lease_seconds)
    return book


def test_a_sync_touches_the_counters_settled_since_the_last_not_every_counter_known() -> None:
    now, lease_seconds = 1000.0, 10.0
    book = _leased_book(10_000, now, lease_seconds)
    book.sweep(now)  # the first sweep: none again for a minute
    assert sync_call(book, lambda kind, name: kind + name, "lease", lease_seconds, now, {}, False) is None
    book.counters = _NotToBeWalked(book.counters)  # the first sync looked: no lease is due before 1002.5
    book.settle(Settlement("r7", now, (("usd:day:20261207:key:k7", 8, 90_000),), None))
    call = sync_call(book, lambda kind, name: kind + name, "lease", lease_seconds, now, {}, False)
    assert call.names == ["usd:day:20261207:key:k7"] and call.batch.counters == ("usd:day:20261207:key:k7",)
    assert book.counters["usd:day:20261207:key:k7"].sending == 8
    book.confirm(call.batch)
    assert book.counters["usd:day:20261207:key:k7"].sending == 0
    book.sweep(now + 1)
    assert sync_call(book, lambda kind, name: kind + name, "lease", lease_seconds, now + 1, {}, False) is None


def test_leases_are_renewed_when_due_and_looked_at_again_after_a_failed_sync() -> None:
    now, lease_seconds = 1000.0, 10.0  # a lease is due for renewal when less than 5 s of trust is left
    book = _leased_book(3, now, lease_seconds)  # trusted until 1007.5: due from 1002.5
    key = lambda kind, name: kind + name  # noqa: E731
    k0, k1, k2 = (f"usd:day:20261207:key:k{i}" for i in range(3))
    book.counters[k1].trusted_until = now + 4  # renewed earlier than the others: due from 999
    book.renewed_until(now + 4, lease_seconds)
    assert sync_call(book, key, "lease", lease_seconds, now - 2, {}, False) is None  # none due yet
    call = sync_call(book, key, "lease", lease_seconds, now - 0.5, {}, False)
    assert call.names == [k1]
    distrust(book, call)  # Redis did not answer: what it did is unknown, so k1 is asked about again
    again = sync_call(book, key, "lease", lease_seconds, now - 0.5, {}, False)
    assert again.names == [k1]
    apply_result(book, again, [0, 0, 1000, 0], now - 0.5, lease_seconds, {}, None)  # trusted until 1007: due 1002
    assert sync_call(book, key, "lease", lease_seconds, now + 1.9, {}, False) is None
    assert sync_call(book, key, "lease", lease_seconds, now + 2.2, {}, False).names == [k1]
    assert sorted(sync_call(book, key, "lease", lease_seconds, now + 2.6, {}, False).names) == [k0, k1, k2]
    assert len(sync_call(book, key, "lease", lease_seconds, now - 2, {}, True).names) == 3  # closing: all, given back


def test_counters_past_their_window_are_forgotten_within_a_minute() -> None:
    book = LeaseBook(60)
    book.settle(Settlement("r1", 0.0, (("usd:day:20261206:team:a", 5, 100),), None))
    book.confirm(book.next_batch())
    book.sweep(50.0)  # the first sweep; the window's counter still lives (until 100)
    book.sweep(105.0)  # past its end, but within a minute of the last sweep
    assert "usd:day:20261206:team:a" in book.counters
    book.sweep(50.0 + SWEEP_SECONDS)
    assert book.counters == {}


def test_a_plan_follows_its_window_and_the_layouts_kept_stay_bounded() -> None:
    """Plans reuse the counters' layout of their rule set while its windows last: a new window gets new counter
    names, and keys' own budgets (a rule set per key) keep at most _KEPT_LAYOUTS layouts, the oldest out."""
    planner = Planner((), prices=PriceTable.load([default_pricing_path()], {}), default_max_output_tokens=100,
                      hold_seconds=900)
    midnight = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    def plan_for(key: str, at: float):
        ex = SimpleNamespace(key_id=key, key_budget_nanos=5_000, model="gpt-4o-mini", endpoint="chat", body={},
                             max_output_tokens=None, prompt_tokens=lambda: 10)
        return planner.plan(ex, at)

    before, after = plan_for("k0", midnight - 1), plan_for("k0", midnight + 1)
    assert [c.counter for c in before.charges] == ["usd:day:20251231:key:k0"]
    assert [c.counter for c in after.charges] == ["usd:day:20260101:key:k0"]
    assert after.charges[0].limit == 5_000 and after.charges[0].ttl == 86_400 - 1 + 900 + 60
    assert after.charges[0].amount == PriceTable.load([default_pricing_path()], {}).estimate_nanos(
        "gpt-4o-mini", 10, 100)
    for i in range(_KEPT_LAYOUTS + 500):
        plan_for(f"k{i}", midnight + 2)
    assert len(planner._layouts) <= _KEPT_LAYOUTS and len(planner._key_rules) <= _KEPT_LAYOUTS + 1
    again = plan_for("k0", midnight + 3)  # pushed out long ago: laid out anew, the same
    assert [(c.counter, c.limit) for c in again.charges] == [("usd:day:20260101:key:k0", 5_000)]
