"""What routes receive: the database, the products catalog, and who is calling."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, Path, Request, Security
from fastapi.security import APIKeyHeader

from app.clients.products import ProductsCatalog
from app.core.config import Settings
from app.core.context import Caller, request_id_var
from app.core.database import Database
from app.core.errors import ValidationFailed
from app.schemas.common import PRODUCT_ID_PATTERN

# Declares the scheme for OpenAPI (Swagger's "Authorize" button); the check itself runs in
# middleware, so that it comes before body parsing.
api_key_scheme = APIKeyHeader(name="X-API-KEY", auto_error=False, scheme_name="ApiKey")

# Every dependency is `async def` although none awaits: FastAPI runs a plain `def` dependency
# in the thread pool, a thread hand-off per dependency per request (see bench/RESULTS.md).


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_catalog(request: Request) -> ProductsCatalog:
    catalog: ProductsCatalog = request.app.state.catalog
    return catalog


async def get_caller(
    request: Request, _key: Annotated[str | None, Security(api_key_scheme)] = None
) -> Caller:
    return Caller(actor=request.state.actor, request_id=request_id_var.get())


_ETAG = re.compile(r'^\s*(?:W/)?"(\d{1,18})"\s*$')


async def parse_if_match(
    if_match: Annotated[
        str | None,
        Header(description='`"<version>"` from the ETag: change only at that version.'),
    ] = None,
) -> int | None:
    if if_match is None:
        return None
    match = _ETAG.match(if_match)
    if match is None:
        raise ValidationFailed(
            "If-Match must be a quoted version, as given by the ETag.",
            errors=[{"field": "If-Match", "message": 'Expected "<version>"'}],
        )
    return int(match.group(1))


Db = Annotated[Database, Depends(get_database)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Catalog = Annotated[ProductsCatalog, Depends(get_catalog)]
CallerDep = Annotated[Caller, Depends(get_caller)]
IfMatch = Annotated[int | None, Depends(parse_if_match)]
ProductIdPath = Annotated[
    str, Path(pattern=PRODUCT_ID_PATTERN, description="1–64 characters of [A-Za-z0-9._-].")
]
