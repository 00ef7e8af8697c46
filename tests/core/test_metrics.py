"""Metrics whose series come and go: an endpoint's outbox lag."""

from __future__ import annotations

from prometheus_client import REGISTRY

from app.core import metrics

LAG = "inventory_webhook_outbox_lag_seconds"


def lag_of(endpoint: str) -> float | None:
    return REGISTRY.get_sample_value(LAG, {"endpoint": endpoint})


def test_an_endpoint_no_longer_listed_loses_its_lag_series() -> None:
    metrics.set_outbox_lag({"ep-a": 3.0, "ep-b": 1.5})
    metrics.set_outbox_lag({"ep-b": 2.0})

    assert lag_of("ep-a") is None
    assert lag_of("ep-b") == 2.0

    metrics.set_outbox_lag({"ep-a": 0.0})

    assert lag_of("ep-a") == 0.0
    assert lag_of("ep-b") is None
    metrics.set_outbox_lag({})
