"""Reservations over HTTP: hold stock, read holds, extend, confirm into a purchase, release."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse

from app.api.deps import CallerDep, CatalogDep, DatabaseDep, SettingsDep
from app.api.docs import INVENTORY, WITH_BODY, links_to, problems
from app.api.idempotency import Answer, Idempotency
from app.api.params import Cursor, Limit
from app.api.purchases import receipt_answer
from app.api.routing import ResourceRoute, resource_type
from app.models.reservation import ReservationStatus
from app.schemas.common import Page, ProductId
from app.schemas.purchases import PurchaseOut
from app.schemas.reservations import ReservationExtension, ReservationIn, ReservationOut
from app.services import reservations

router = APIRouter(
    prefix="/reservations",
    tags=["reservations"],
    route_class=ResourceRoute,
)

ReservationId = Annotated[str, Path(description="The reservation's id.")]


def _held_answer(reservation: dict[str, Any], _created: bool) -> Answer:
    return Answer(201, reservation, {"Location": f"/reservations/{reservation['id']}"})


@router.post(
    "",
    summary="Hold stock for a checkout",
    status_code=status.HTTP_201_CREATED,
    response_model=ReservationOut,
    responses={
        201: {
            "description": "Created",
            "links": links_to(
                "reservation_id",
                "get_reservation",
                "extend_reservation",
                "confirm_reservation",
                "release_reservation",
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
@resource_type("reservations", takes="reservations")
async def create_reservation(
    order: ReservationIn,
    database: DatabaseDep,
    catalog: CatalogDep,
    caller: CallerDep,
    settings: SettingsDep,
    idempotent: Idempotency,
) -> JSONResponse:
    """Check every product with the products service and capture its price, then hold every
    line in one transaction, or none: 409 names every line short of `available`."""
    asked = order.ttl_seconds
    ttl = settings.reservation_ttl if asked is None else timedelta(seconds=asked)
    async with idempotent.claim(database, caller, order.model_dump(mode="json")) as claim:
        if claim.replay is not None:
            return claim.replayed(_held_answer).response()
        held = await reservations.hold(
            database, catalog, caller, order=order, ttl=ttl, key=claim.key
        )
    return _held_answer(held.model_dump(mode="json"), True).response()


@router.get("", summary="List reservations", responses=problems(*INVENTORY))
@resource_type("reservations")
async def list_reservations(
    database: DatabaseDep,
    status: Annotated[ReservationStatus | None, Query(description="Only this status.")] = None,
    product_id: Annotated[ProductId | None, Query(description="Only those holding it.")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ReservationOut]:
    """Reservations, newest first."""
    return await reservations.list_reservations(
        database, status=status, product_id=product_id, limit=limit, cursor=cursor
    )


@router.get(
    "/{reservation_id}", summary="A reservation", responses=problems(*INVENTORY, "not-found")
)
@resource_type("reservations")
async def get_reservation(reservation_id: ReservationId, database: DatabaseDep) -> ReservationOut:
    """The reservation as it stands: `active`, `confirmed`, `released` or `expired`."""
    return await reservations.get_reservation(database, reservation_id=reservation_id)


@router.patch(
    "/{reservation_id}",
    summary="Extend a reservation",
    responses=problems(*INVENTORY, *WITH_BODY, "not-found", "reservation-not-active"),
)
@resource_type("reservations", takes="reservations")
async def extend_reservation(
    reservation_id: ReservationId,
    body: ReservationExtension,
    database: DatabaseDep,
    caller: CallerDep,
) -> ReservationOut:
    """Make an active reservation expire `ttl_seconds` from now."""
    return await reservations.extend(
        database,
        caller,
        reservation_id=reservation_id,
        ttl=timedelta(seconds=body.ttl_seconds),
    )


@router.post(
    "/{reservation_id}/confirm",
    summary="Confirm a reservation into a purchase",
    status_code=status.HTTP_201_CREATED,
    response_model=PurchaseOut,
    responses={
        200: {"description": "Confirmed before: the same receipt", "model": PurchaseOut},
        **problems(
            *INVENTORY,
            "not-found",
            "reservation-not-active",
            "idempotency-key-in-use",
            "idempotency-key-reuse",
        ),
    },
)
@resource_type("purchases")
async def confirm_reservation(
    reservation_id: ReservationId,
    database: DatabaseDep,
    caller: CallerDep,
    idempotent: Idempotency,
) -> JSONResponse:
    """Take the held units out of stock as one purchase, at the prices captured when they
    were held, without asking the products service. Again: 200 with the same receipt."""
    async with idempotent.claim(database, caller, None) as claim:
        if claim.replay is not None:
            return claim.replayed(receipt_answer).response()
        confirmation = await reservations.confirm(
            database, caller, reservation_id=reservation_id, key=claim.key
        )
    receipt = confirmation.receipt.model_dump(mode="json")
    return receipt_answer(receipt, confirmation.created).response()


@router.post(
    "/{reservation_id}/release",
    summary="Release a reservation",
    responses=problems(*INVENTORY, "not-found", "reservation-not-active"),
)
@resource_type("reservations")
async def release_reservation(
    reservation_id: ReservationId, database: DatabaseDep, caller: CallerDep
) -> ReservationOut:
    """Give the held units back to `available`. Again, or once expired: nothing changes."""
    return await reservations.release(database, caller, reservation_id=reservation_id)
