"""Purchases over HTTP: buy, read the receipt, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from fastapi.responses import JSONResponse

from app.api.deps import CallerDep, CatalogDep, DatabaseDep
from app.api.docs import INVENTORY, WITH_BODY, links_to, problems
from app.api.idempotency import Answer, Idempotency
from app.api.routing import ResourceRoute, resource_type
from app.core import metrics
from app.core.errors import InsufficientStock, ProblemError, ProductsUnavailable, UnknownProduct
from app.schemas.purchases import PurchaseIn, PurchaseOut
from app.services import purchases

router = APIRouter(prefix="/inventory", tags=["purchases"], route_class=ResourceRoute)

_OUTCOMES: dict[type[ProblemError], metrics.PurchaseOutcome] = {
    InsufficientStock: "insufficient_stock",
    UnknownProduct: "unknown_product",
    ProductsUnavailable: "products_unavailable",
}

PurchaseId = Annotated[str, Path(description="The purchase's id.")]


def receipt_answer(receipt: dict[str, Any], created: bool) -> Answer:
    """201 with the purchase's `Location` when this request made it, else 200."""
    if not created:
        return Answer(200, receipt)
    return Answer(201, receipt, {"Location": f"/inventory/purchases/{receipt['id']}"})


@router.post(
    "/purchase",
    summary="Buy several products at once",
    operation_id="buy",
    status_code=status.HTTP_201_CREATED,
    response_model=PurchaseOut,
    responses={
        201: {
            "description": "Created",
            "links": links_to(
                "purchase_id",
                "get_purchase",
                "cancel_purchase",
            ),
        },
        **problems(
            *INVENTORY,
            *WITH_BODY,
            "insufficient-stock",
            "idempotency-key-in-use",
            "unknown-product",
            "idempotency-key-reuse",
            "products-unavailable",
        ),
    },
)
@resource_type("purchases", takes="purchases")
async def create_purchase(
    order: PurchaseIn,
    database: DatabaseDep,
    catalog: CatalogDep,
    caller: CallerDep,
    idempotent: Idempotency,
) -> JSONResponse:
    """Check every product with the products service, then take every line from stock in
    one transaction, or none: 409 names every short line."""
    try:
        async with idempotent.claim(database, caller, order.model_dump(mode="json")) as claim:
            if claim.replay is None:
                receipt = await purchases.buy(database, catalog, caller, order=order, key=claim.key)
                answer = receipt_answer(receipt.model_dump(mode="json"), True)
            else:
                answer = claim.replayed(receipt_answer)
    except ProblemError as error:
        if type(error) in _OUTCOMES:
            metrics.count_purchase(_OUTCOMES[type(error)])
        raise
    metrics.count_purchase("replayed" if answer.replayed else "completed")
    return answer.response()


@router.get(
    "/purchases/{purchase_id}",
    summary="A purchase's receipt",
    responses=problems(*INVENTORY, "not-found"),
)
@resource_type("purchases")
async def get_purchase(purchase_id: PurchaseId, database: DatabaseDep) -> PurchaseOut:
    """The purchase as it stands: completed or cancelled."""
    return await purchases.get_purchase(database, purchase_id=purchase_id)


@router.post(
    "/purchases/{purchase_id}/cancel",
    summary="Cancel a purchase",
    # A body is not read, but one over the limit is still refused before the route runs.
    responses=problems(*INVENTORY, "not-found", "payload-too-large"),
)
@resource_type("purchases")
async def cancel_purchase(
    purchase_id: PurchaseId, database: DatabaseDep, caller: CallerDep
) -> PurchaseOut:
    """Return every line to stock, once. Cancelling again changes nothing."""
    return await purchases.cancel(database, caller, purchase_id=purchase_id)
