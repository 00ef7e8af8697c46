"""What routes receive, one typed dependency per thing: the database, the products catalog,
the settings, the webhook sender (the process's resources, made in the lifespan), and who
is calling.

The database and the catalog have a plain accessor of the request too (`database_of`,
`catalog_of`) for the hottest route, where FastAPI's resolution of a dependency costs more
than the route's own work (docs/performance.md); elsewhere the typed dependency reads better.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, Path, Request

from app.api.auth import authenticated_actor
from app.clients.products import ProductsCatalog
from app.clients.webhooks import WebhookSender
from app.core.config import Settings
from app.core.context import Caller, request_id_var
from app.core.database import Database
from app.core.errors import ValidationFailed
from app.models.stock_level import MAX_VERSION
from app.schemas.common import PRODUCT_ID_RULE, ProductId

# Every dependency is `async def` although none awaits: FastAPI runs a plain `def` dependency
# in the thread pool, a thread hand-off per dependency per request (docs/performance.md).


def database_of(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def catalog_of(request: Request) -> ProductsCatalog:
    catalog: ProductsCatalog = request.app.state.catalog
    return catalog


async def get_database(request: Request) -> Database:
    return database_of(request)


async def get_catalog(request: Request) -> ProductsCatalog:
    return catalog_of(request)


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_webhook_sender(request: Request) -> WebhookSender:
    sender: WebhookSender = request.app.state.webhook_sender
    return sender


async def get_caller(request: Request) -> Caller:
    """The actor whose key `ApiKeyMiddleware` accepted, under this request's id."""
    return Caller(actor=authenticated_actor(request), request_id=request_id_var.get())


DatabaseDep = Annotated[Database, Depends(get_database)]
CatalogDep = Annotated[ProductsCatalog, Depends(get_catalog)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
WebhookSenderDep = Annotated[WebhookSender, Depends(get_webhook_sender)]
CallerDep = Annotated[Caller, Depends(get_caller)]


def decimal_up_to(maximum: int) -> str:
    """A regular expression for the decimal numbers 1 … `maximum`, without leading zeros.

    So the OpenAPI document states the range of a number sent inside a string (a quoted
    version), which a JSON Schema `maximum` cannot.
    """
    digits = str(maximum)
    shorter = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []
    same_length = []
    for place, digit in enumerate(digits):
        lowest, highest = (1 if place == 0 else 0), int(digit) - 1
        if highest < lowest:
            continue
        choice = str(lowest) if lowest == highest else f"[{lowest}-{highest}]"
        rest = len(digits) - place - 1
        same_length.append(digits[:place] + choice + (f"[0-9]{{{rest}}}" if rest else ""))
    return "(?:" + "|".join([*shorter, *same_length, digits]) + ")"


IF_MATCH_PATTERN = rf'^(?:W/)?"{decimal_up_to(MAX_VERSION)}"$'
_ETAG = re.compile(IF_MATCH_PATTERN)


async def parse_if_match(
    if_match: Annotated[
        str | None,
        Header(
            max_length=64,
            description='`"<version>"` from the ETag (a version is 1 … '
            f"{MAX_VERSION:,}, without leading zeros): change only at that version.",
            json_schema_extra={"pattern": IF_MATCH_PATTERN},
        ),
    ] = None,
) -> int | None:
    if if_match is None:
        return None
    if _ETAG.match(if_match) is None:
        raise ValidationFailed(
            "If-Match must be a quoted version, as given by the ETag.",
            errors=[{"field": "If-Match", "message": f'Expected "<1 … {MAX_VERSION}>"'}],
        )
    return int(if_match.removeprefix("W/").strip('"'))


IfMatch = Annotated[int | None, Depends(parse_if_match)]
ProductIdPath = Annotated[ProductId, Path(description=PRODUCT_ID_RULE + ".")]
