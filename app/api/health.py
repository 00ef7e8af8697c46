"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError

from app import __version__
from app.api.deps import CatalogDep, DatabaseDep
from app.core.database import Database
from app.core.errors import DatabaseUnavailable

router = APIRouter(tags=["operations"])

# A readiness probe must answer within the prober's own timeout, even if the database hangs.
DATABASE_PROBE_SECONDS = 2.0


class Health(BaseModel):
    status: Literal["ok"]
    version: str = Field(description="The service's version.", examples=["0.2.0"])


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ready", "checks": {"database": "ok", "products": "disabled"}},
            ]
        }
    )

    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(
        description="`database` and `products`: `ok`, `unavailable`, `unauthorized` or "
        "`disabled`. Only the database decides readiness."
    )
    reasons: dict[str, str] | None = Field(
        default=None, description="Why each failed check failed; absent when none did."
    )


_NOT_READY = {
    "status": "unavailable",
    "checks": {"database": "unavailable", "products": "ok"},
    "reasons": {"database": "The database cannot answer right now."},
}


@router.get("/health", summary="Liveness")
async def health() -> Health:
    """200 while the process runs."""
    return Health(status="ok", version=__version__)


@router.get(
    "/ready",
    summary="Readiness",
    responses={
        503: {
            "model": Readiness,
            "description": "The database does not answer, or its schema is not at head.",
            "content": {"application/json": {"example": _NOT_READY}},
        }
    },
    response_model_exclude_none=True,
)
async def ready(db: DatabaseDep, catalog: CatalogDep, response: Response) -> Readiness:
    """Probes the database (a query, on a connection to a database whose schema is at head)
    and the products service now. Only the database decides readiness."""
    failure = await probe_database(db)
    database = "ok" if failure is None else "unavailable"
    checks = {"database": database, "products": await catalog.probe()}
    if failure is not None:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Readiness(
            status="unavailable", checks=checks, reasons={"database": _public_reason(failure)}
        )
    return Readiness(status="ready", checks=checks)


async def probe_database(db: Database) -> Exception | None:
    """Why the database does not answer a query within the probe's time; None when it does."""
    try:
        async with asyncio.timeout(DATABASE_PROBE_SECONDS):
            await db.ping()
    except (DatabaseUnavailable, SQLAlchemyError, OSError) as error:
        return error
    return None


def _public_reason(error: Exception) -> str:
    """What anyone may read: the driver's own words name hosts, databases and roles, so
    they go to the log and to `inventory check`, not here."""
    if isinstance(error, DatabaseUnavailable):
        return error.detail
    if isinstance(error, TimeoutError):
        return f"The database did not answer within {DATABASE_PROBE_SECONDS:g} s."
    return "The database probe failed."
