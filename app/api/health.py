"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response, status
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from app.api.deps import Catalog, Db
from app.core.errors import DatabaseUnavailable

router = APIRouter(tags=["operations"])

# A readiness probe must answer within the prober's own timeout, even if the database hangs.
DATABASE_PROBE_SECONDS = 2.0


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/health", summary="Liveness")
async def health() -> Health:
    """200 while the process runs."""
    return Health(status="ok")


@router.get(
    "/ready",
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "The database does not answer."}},
)
async def ready(db: Db, catalog: Catalog, response: Response) -> Readiness:
    """Probes the database and the products service now. Only the database decides readiness."""
    try:
        async with asyncio.timeout(DATABASE_PROBE_SECONDS):
            await db.ping()
        database = "ok"
    except (DatabaseUnavailable, SQLAlchemyError, OSError):
        database = "unavailable"
    checks = {"database": database, "products": await catalog.probe()}
    if database != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Readiness(status="unavailable", checks=checks)
    return Readiness(status="ready", checks=checks)
