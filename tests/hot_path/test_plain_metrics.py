"""The plain counters and histograms of one process render exactly as prometheus_client's own would."""

from unittest import mock

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from proxy.accounting.metric_families import PlainCounter, PlainHistogram


def _rendered(counter_class, histogram_class) -> bytes:
    registry = CollectorRegistry()
    counter = counter_class("c", "a counter", ["a", "b"], registry=registry)
    histogram = histogram_class("h", "a histogram", ["e"], buckets=(0.1, 1, 5), registry=registry)
    counter.labels("1", 2).inc()
    counter.labels("1", "2").inc(3.5)
    counter.labels("z", "w").inc(0)
    for value in (0.05, 0.1, 0.10001, 1, 4, 6, 100, 0):  # on a bound, past the last one, at 0
        histogram.labels("q").observe(value)
    histogram.labels("p")  # a series with no observation yet
    return generate_latest(registry)


def test_plain_metrics_render_as_prometheus_clients_own() -> None:
    with mock.patch("time.time", return_value=1234.5):  # the _created series
        assert _rendered(PlainCounter, PlainHistogram) == _rendered(Counter, Histogram)


def test_a_plain_counter_refuses_to_go_down() -> None:
    counter = PlainCounter("c", "a counter", ["a"], registry=CollectorRegistry())
    with pytest.raises(ValueError):
        counter.labels("x").inc(-1)
