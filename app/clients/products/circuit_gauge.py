"""The products circuit breaker's state as a Prometheus gauge, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import get_args

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.clients.products.breaker import CircuitState


class CircuitStateCollector(Collector):
    """The state of the catalog's circuit breaker as a 0/1 gauge per state.

    Reads `circuit_state` of the catalog when it has one (a standalone catalog has none).
    Each worker process has its own breaker; a scrape shows the worker that answered.
    """

    def __init__(self, catalog: object) -> None:
        self.catalog = catalog

    def collect(self) -> Iterator[Metric]:
        state = getattr(self.catalog, "circuit_state", None)
        if state is None:
            return
        gauge = GaugeMetricFamily(
            "inventory_products_circuit_state",
            "1 for the state the products circuit breaker is in, 0 for the others.",
            labels=["state"],
        )
        for candidate in get_args(CircuitState):
            gauge.add_metric([candidate], 1.0 if state == candidate else 0.0)
        yield gauge
