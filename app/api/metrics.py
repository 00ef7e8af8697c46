"""Prometheus metrics over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import CatalogDep
from app.clients.products.circuit_gauge import CircuitStateCollector
from app.core import metrics

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {metrics.CONTENT_TYPE: {"schema": {"type": "string"}}},
        }
    },
)
async def read_metrics(catalog: CatalogDep) -> Response:
    """Requests by route template, method and status, their latency, purchases by outcome,
    ledger movements by kind, product look-ups by outcome and the products circuit state.
    Public, like `/health`. With several workers, counters are summed over all of them."""
    return Response(metrics.render(CircuitStateCollector(catalog)), media_type=metrics.CONTENT_TYPE)
