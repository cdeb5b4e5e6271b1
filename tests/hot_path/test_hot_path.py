"""What the per-request shortcuts must keep: the ledger's row values in column order, each request's UTC day in
the fleet's totals, the handler task tracked in whatever loop serves it, a metric series only once it has a
value, start-up's objects out of the collector's way once the server listens, and the fleet's totals summed
per group before they are spelled out as fields."""

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
from proxy.store import Settlement, Totals
from proxy.store.leases import LeaseBook


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
