"""Reservations over HTTP: hold stock, read holds, extend, confirm into a purchase, release."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse

from app.api.deps import CallerDep, CatalogDep, DatabaseDep, SettingsDep
from app.api.docs import INVENTORY, WITH_BODY, links_to, problems
from app.api.idempotency import Answer, Idempotency
from app.api.params import Cursor, Limit
from app.api.purchases import receipt_answer
from app.api.strict_json import StrictJsonRoute
from app.models.reservation import ReservationStatus
from app.schemas.common import Page, ProductId
from app.schemas.purchases import PurchaseOut
from app.schemas.reservations import ReservationExtension, ReservationIn, ReservationOut
from app.services import reservations
from app.services.reservations import Confirmation

router = APIRouter(
    prefix="/reservations",
    tags=["reservations"],
    route_class=StrictJsonRoute,
)

ReservationId = Annotated[str, Path(description="The reservation's id.")]


def _held_answer(reservation: ReservationOut) -> Answer:
    body = reservation.model_dump(mode="json")
    return Answer(201, body, {"Location": f"/reservations/{reservation.id}"})


def _confirmed_answer(confirmation: Confirmation) -> Answer:
    return receipt_answer(confirmation.receipt, created=confirmation.created)


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
                "get_reservation_reservations__reservation_id__get",
                "extend_reservation_reservations__reservation_id__patch",
                "confirm_reservation_reservations__reservation_id__confirm_post",
                "release_reservation_reservations__reservation_id__release_post",
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
    answer = await idempotent.answer(
        database,
        caller,
        order.model_dump(mode="json"),
        lambda claim: reservations.hold(
            database, catalog, caller, order=order, ttl=ttl, claim=claim
        ),
        _held_answer,
    )
    return answer.response()


@router.get("", summary="List reservations", responses=problems(*INVENTORY))
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
async def get_reservation(reservation_id: ReservationId, database: DatabaseDep) -> ReservationOut:
    """The reservation as it stands: `active`, `confirmed`, `released` or `expired`."""
    return await reservations.get_reservation(database, reservation_id=reservation_id)


@router.patch(
    "/{reservation_id}",
    summary="Extend a reservation",
    responses=problems(*INVENTORY, *WITH_BODY, "not-found", "reservation-not-active"),
)
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
async def confirm_reservation(
    reservation_id: ReservationId,
    database: DatabaseDep,
    caller: CallerDep,
    idempotent: Idempotency,
) -> JSONResponse:
    """Take the held units out of stock as one purchase, at the prices captured when they
    were held, without asking the products service. Again: 200 with the same receipt."""
    answer = await idempotent.answer(
        database,
        caller,
        None,
        lambda claim: reservations.confirm(
            database, caller, reservation_id=reservation_id, claim=claim
        ),
        _confirmed_answer,
    )
    return answer.response()


@router.post(
    "/{reservation_id}/release",
    summary="Release a reservation",
    responses=problems(*INVENTORY, "not-found", "reservation-not-active"),
)
async def release_reservation(
    reservation_id: ReservationId, database: DatabaseDep, caller: CallerDep
) -> ReservationOut:
    """Give the held units back to `available`. Again, or once expired: nothing changes."""
    return await reservations.release(database, caller, reservation_id=reservation_id)
