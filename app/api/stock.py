"""Stock levels and their ledger over HTTP."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status
from fastapi.responses import JSONResponse

from app.api.answers import IdempotencyKeyHeader, answer_response
from app.api.deps import Ctx, IfMatch, ProductIdPath
from app.api.docs import problems
from app.api.strict_json import StrictJsonRoute
from app.models.stock_level import MAX_QUANTITY
from app.schemas.common import PRODUCT_ID_PATTERN, Page
from app.schemas.stock import Adjustment, MovementOut, SetQuantity, StockLevelOut
from app.services import idempotency, ledger, stock

router = APIRouter(
    prefix="/inventory",
    tags=["stock"],
    responses=problems(401, 413, 503),
    route_class=StrictJsonRoute,
)

Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
]


def _etag(response: Response, stock_level: StockLevelOut) -> StockLevelOut:
    response.headers["ETag"] = f'"{stock_level.version}"'
    return stock_level


@router.get("", summary="List stock levels", responses=problems(422))
async def list_stock_levels(
    ctx: Ctx,
    product_id: Annotated[
        list[Annotated[str, Query(pattern=PRODUCT_ID_PATTERN)]],
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
        ctx.database,
        product_ids=product_id,
        max_quantity=max_quantity,
        low_stock=low_stock,
        limit=limit,
        cursor=cursor,
    )


@router.get("/{product_id}", summary="Get a stock level", responses=problems(404, 422))
async def get_stock_level(product_id: ProductIdPath, ctx: Ctx, response: Response) -> StockLevelOut:
    """One stock level, with what the products service says of the product."""
    return _etag(response, await stock.get_stock(ctx.database, ctx.catalog, product_id=product_id))


@router.put(
    "/{product_id}",
    summary="Set a stock level",
    responses={
        201: {"description": "Created", "model": StockLevelOut},
        **problems(400, 412, 422, 503),
    },
)
async def set_stock_level(
    product_id: ProductIdPath,
    body: SetQuantity,
    ctx: Ctx,
    if_match: IfMatch,
    response: Response,
    if_none_match: Annotated[
        str | None, Header(description="`*` creates only: 412 when the stock level exists.")
    ] = None,
) -> StockLevelOut:
    """Set the quantity on hand. The first set registers the product, after checking it
    with the products service."""
    result = await stock.set_quantity(
        ctx.database,
        ctx.catalog,
        ctx.caller,
        product_id=product_id,
        quantity=body.quantity,
        reason=body.reason,
        threshold=(
            body.low_stock_threshold
            if "low_stock_threshold" in body.model_fields_set
            else stock.KEEP
        ),
        if_match=if_match,
        create_only=if_none_match == "*",
    )
    if result.created:
        response.status_code = status.HTTP_201_CREATED
        response.headers["Location"] = f"/inventory/{product_id}"
    return _etag(response, result.stock)


@router.delete(
    "/{product_id}",
    summary="Forget a stock level",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(404, 412, 422),
)
async def delete_stock_level(product_id: ProductIdPath, ctx: Ctx, if_match: IfMatch) -> Response:
    """Forget the stock level. Its ledger stays readable."""
    await stock.delete_stock(ctx.database, ctx.caller, product_id=product_id, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{product_id}/adjustments",
    summary="Adjust a stock level",
    response_model=StockLevelOut,
    responses=problems(400, 404, 409, 412, 422),
)
async def adjust_stock_level(
    product_id: ProductIdPath,
    body: Adjustment,
    ctx: Ctx,
    if_match: IfMatch,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Add (positive `delta`) or remove (negative) stock; never below zero."""
    path = f"/inventory/{product_id}/adjustments"
    answer = await ctx.once(
        idempotency_key,
        idempotency.fingerprint(
            "POST", path, {**body.model_dump(mode="json"), "if_match": if_match}
        ),
        lambda claim: stock.adjust(
            ctx.database,
            ctx.caller,
            product_id=product_id,
            delta=body.delta,
            reason=body.reason,
            if_match=if_match,
            claim=claim,
        ),
    )
    return answer_response(answer)


@router.get("/{product_id}/movements", summary="A product's ledger", responses=problems(404, 422))
async def list_movements(
    product_id: ProductIdPath, ctx: Ctx, limit: Limit = 50, cursor: Cursor = None
) -> Page[MovementOut]:
    """Every change of this product's stock, newest first."""
    return await ledger.list_movements(
        ctx.database, product_id=product_id, limit=limit, cursor=cursor
    )
