"""Stock levels and their ledger over HTTP."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse

from app.api.deps import (
    CallerDep,
    CatalogDep,
    DatabaseDep,
    IfMatch,
    ProductIdPath,
    catalog_of,
    database_of,
)
from app.api.docs import INVENTORY, WITH_BODY, problems
from app.api.idempotency import Answer, Idempotency
from app.api.params import Cursor, Limit
from app.api.routing import ResourceRoute, resource_type
from app.models.stock_level import MAX_QUANTITY
from app.schemas.common import Page, ProductId
from app.schemas.stock import Adjustment, MovementOut, SetQuantity, StockLevelOut
from app.services import ledger, stock

router = APIRouter(prefix="/inventory", tags=["stock"], route_class=ResourceRoute)


def _stock_response(
    stock_level: StockLevelOut, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """The stock level as JSON with its ETag. Returned ready, so FastAPI does not validate
    and serialize the model a second time (docs/performance.md); the route's
    `response_model` still documents it."""
    return Response(
        stock_level.model_dump_json(),
        status_code,
        headers={"ETag": f'"{stock_level.version}"', **(headers or {})},
        media_type="application/json",
    )


def _stock_answer(stock_level: dict[str, Any], _created: bool) -> Answer:
    return Answer(200, stock_level, {"ETag": f'"{stock_level["version"]}"'})


@router.get("", summary="List stock levels", responses=problems(*INVENTORY))
@resource_type("stock-levels")
async def list_stock_levels(
    database: DatabaseDep,
    product_id: Annotated[
        list[ProductId],
        Query(max_length=500, description="Only these products (repeatable)."),
    ] = [],  # noqa: B006 - FastAPI copies query defaults
    max_quantity: Annotated[
        int | None, Query(ge=0, le=MAX_QUANTITY, description="Low-stock view: at most this many.")
    ] = None,
    low_stock: Annotated[
        bool | None,
        Query(
            description="true: only levels at or below their `low_stock_threshold`; "
            "false: only the others."
        ),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[StockLevelOut]:
    """Stock levels ordered by product id, without product details."""
    return await stock.list_stock(
        database,
        product_ids=product_id,
        max_quantity=max_quantity,
        low_stock=low_stock,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/{product_id}",
    summary="Get a stock level",
    response_model=StockLevelOut,
    responses=problems(*INVENTORY, "not-found"),
)
@resource_type("stock-levels")
async def get_stock_level(product_id: ProductIdPath, request: Request) -> Response:
    """One stock level, with what the products service says of the product."""
    database, catalog = database_of(request), catalog_of(request)
    return _stock_response(await stock.get_stock(database, catalog, product_id=product_id))


@router.put(
    "/{product_id}",
    summary="Set a stock level",
    response_model=StockLevelOut,
    responses={
        201: {"description": "Created", "model": StockLevelOut},
        **problems(
            *INVENTORY,
            *WITH_BODY,
            "insufficient-stock",
            "version-mismatch",
            "unknown-product",
            "products-unavailable",
        ),
    },
)
@resource_type("stock-levels", takes="stock-levels")
async def set_stock_level(
    product_id: ProductIdPath,
    body: SetQuantity,
    database: DatabaseDep,
    catalog: CatalogDep,
    caller: CallerDep,
    if_match: IfMatch,
    if_none_match: Annotated[
        Literal["*"] | None,
        Header(
            description="`*` (the only value taken) creates only: 412 when the stock level exists."
        ),
    ] = None,
) -> Response:
    """Set the quantity on hand. The first set registers the product, after checking it
    with the products service."""
    threshold = (
        body.low_stock_threshold if "low_stock_threshold" in body.model_fields_set else stock.KEEP
    )
    change = stock.NewQuantity(product_id, body.quantity, body.reason, threshold)
    if if_match is not None:
        replaced = await stock.replace_stock(database, caller, change=change, if_match=if_match)
        return _stock_response(replaced)
    if if_none_match == "*":
        return _created(await stock.create_stock(database, catalog, caller, change=change))
    result = await stock.set_quantity(database, catalog, caller, change=change)
    return _created(result.stock) if result.created else _stock_response(result.stock)


def _created(stock_level: StockLevelOut) -> Response:
    return _stock_response(
        stock_level, status.HTTP_201_CREATED, {"Location": f"/inventory/{stock_level.product_id}"}
    )


@router.delete(
    "/{product_id}",
    summary="Forget a stock level",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(*INVENTORY, "not-found", "insufficient-stock", "version-mismatch"),
)
@resource_type("stock-levels")
async def delete_stock_level(
    product_id: ProductIdPath, database: DatabaseDep, caller: CallerDep, if_match: IfMatch
) -> Response:
    """Forget the stock level. Its ledger stays readable. Refused (409) while active
    reservations hold some of it."""
    await stock.delete_stock(database, caller, product_id=product_id, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{product_id}/adjustments",
    summary="Adjust a stock level",
    response_model=StockLevelOut,
    responses=problems(
        *INVENTORY,
        *WITH_BODY,
        "not-found",
        "insufficient-stock",
        "idempotency-key-in-use",
        "version-mismatch",
        "idempotency-key-reuse",
    ),
)
@resource_type("stock-levels", takes="adjustments")
async def adjust_stock_level(
    product_id: ProductIdPath,
    body: Adjustment,
    database: DatabaseDep,
    caller: CallerDep,
    idempotent: Idempotency,
    if_match: IfMatch,
) -> JSONResponse:
    """Add (positive `delta`) or remove (negative) stock; never below zero."""
    asked = {**body.model_dump(mode="json"), "if_match": if_match}
    async with idempotent.claim(database, caller, asked) as claim:
        if claim.replay is not None:
            return claim.replayed(_stock_answer).response()
        level = await stock.adjust(
            database,
            caller,
            product_id=product_id,
            delta=body.delta,
            reason=body.reason,
            if_match=if_match,
            key=claim.key,
        )
    return _stock_answer(level.model_dump(mode="json"), False).response()


@router.get(
    "/{product_id}/movements",
    summary="A product's ledger",
    responses=problems(*INVENTORY, "not-found"),
)
@resource_type("movements")
async def list_movements(
    product_id: ProductIdPath, database: DatabaseDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[MovementOut]:
    """Every change of this product's stock, newest first."""
    return await ledger.list_movements(database, product_id=product_id, limit=limit, cursor=cursor)
