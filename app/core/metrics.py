"""Prometheus metrics: what is counted, and how a scrape renders it.

With several worker processes, each keeps its own counters. When `PROMETHEUS_MULTIPROC_DIR`
is set (as `inventory serve --workers N` does), prometheus-client writes them to files in that
directory and a scrape of any worker adds up every worker's values. The variable is read when
prometheus-client is imported, so it has to be in the environment before the process starts.
"""

from __future__ import annotations

import os
from typing import Literal, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from app.models.movement import MovementKind

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Requests that no route took (unknown paths; 401 and 413 refused before routing) share one
# label value, so random paths cannot grow the number of series.
UNMATCHED_ROUTE = "(unmatched)"

PurchaseOutcome = Literal[
    "completed", "insufficient_stock", "unknown_product", "products_unavailable", "replayed"
]
ReservationChange = Literal["created", "confirmed", "released", "expired"]
# Units enter `reserved` when held and leave it on one of the three other changes.
ReservedUnitsChange = Literal["held", "confirmed", "released", "expired"]
ProductLookupOutcome = Literal["found", "not_found", "unavailable", "cache_hit"]

# `*_created` timestamps double the output and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

HTTP_REQUESTS = Counter(
    "inventory_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "inventory_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PURCHASES = Counter("inventory_purchases", "Purchase requests, by outcome.", ["outcome"])
MOVEMENTS = Counter("inventory_movements", "Committed ledger movements, by kind.", ["kind"])
RESERVATIONS = Counter(
    "inventory_reservations", "Changes of reservations, by what happened.", ["change"]
)
RESERVED_UNITS = Counter(
    "inventory_reserved_units",
    "Units that entered (held) or left (confirmed, released, expired) reservations; units "
    "held now = held − confirmed − released − expired.",
    ["change"],
)
PRODUCT_LOOKUPS = Counter(
    "inventory_product_lookups", "Look-ups of products in the products service.", ["outcome"]
)
WRITE_BATCHES = Histogram(
    "inventory_sqlite_write_batch_units",
    "Units of work committed together by one SQLite COMMIT (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
REQUESTS_SHED = Counter(
    "inventory_requests_shed",
    "Requests answered 503 overloaded at once because too many were already in progress.",
)

EVENTS = Counter("inventory_events", "Events committed to the outbox, by type.", ["type"])
DeliveryOutcome = Literal["delivered", "retried", "failed", "refused"]
DELIVERIES = Counter(
    "inventory_webhook_deliveries",
    "Webhook delivery attempts, by outcome: delivered (2xx), retried (failed, tried again "
    "later), failed (given up), refused (the address is not allowed).",
    ["outcome"],
)
OUTBOX_LAG = Gauge(
    "inventory_webhook_outbox_lag_seconds",
    "Age of the oldest event not yet delivered to each enabled endpoint (0: none waiting).",
    ["endpoint"],
    multiprocess_mode="max",
)

# Every known label value is shown from the start (as 0), so rates work from the first scrape.
for _outcome in get_args(PurchaseOutcome):
    PURCHASES.labels(outcome=_outcome)
for _kind in get_args(MovementKind):
    MOVEMENTS.labels(kind=_kind)
for _change in get_args(ReservationChange):
    RESERVATIONS.labels(change=_change)
for _units in get_args(ReservedUnitsChange):
    RESERVED_UNITS.labels(change=_units)
for _lookup in get_args(ProductLookupOutcome):
    PRODUCT_LOOKUPS.labels(outcome=_lookup)
for _delivery in get_args(DeliveryOutcome):
    DELIVERIES.labels(outcome=_delivery)


def count_purchase(outcome: PurchaseOutcome) -> None:
    PURCHASES.labels(outcome=outcome).inc()


def count_reservation(change: ReservationChange) -> None:
    RESERVATIONS.labels(change=change).inc()


def count_reserved_units(change: ReservedUnitsChange, units: int) -> None:
    RESERVED_UNITS.labels(change=change).inc(units)


def count_product_lookup(outcome: ProductLookupOutcome) -> None:
    PRODUCT_LOOKUPS.labels(outcome=outcome).inc()


def count_movement(kind: MovementKind) -> None:
    MOVEMENTS.labels(kind=kind).inc()


def count_event(type_: str) -> None:
    EVENTS.labels(type=type_).inc()


def count_delivery(outcome: DeliveryOutcome) -> None:
    DELIVERIES.labels(outcome=outcome).inc()


# The endpoints this process shows a lag for, so that one no longer listed can be dropped.
_lagging_endpoints: set[str] = set()


def set_outbox_lag(lags: dict[str, float]) -> None:
    """The lag of every enabled endpoint; endpoints no longer listed are dropped."""
    for endpoint in _lagging_endpoints - lags.keys():
        OUTBOX_LAG.remove(endpoint)
    _lagging_endpoints.intersection_update(lags.keys())
    for endpoint, seconds in lags.items():
        OUTBOX_LAG.labels(endpoint=endpoint).set(seconds)
        _lagging_endpoints.add(endpoint)


def observe_write_batch(units: int) -> None:
    WRITE_BATCHES.observe(units)


def count_shed_request() -> None:
    REQUESTS_SHED.inc()


def observe_request(*, route: str | None, method: str, status: int, seconds: float) -> None:
    route = route or UNMATCHED_ROUTE
    HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    HTTP_DURATION.labels(route=route, method=method).observe(seconds)


def render(*collectors: Collector) -> bytes:
    """The Prometheus text exposition of this process, or of all workers in multiprocess mode,
    followed by what `collectors` (read at scrape time, per process) show."""
    if os.environ.get(MULTIPROCESS_ENV):
        counters = CollectorRegistry()
        MultiProcessCollector(counters)  # type: ignore[no-untyped-call]
    else:
        counters = REGISTRY
    scraped = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        scraped.register(collector)
    return generate_latest(counters) + generate_latest(scraped)
