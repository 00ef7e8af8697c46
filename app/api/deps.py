"""What routes receive: the database, the products catalog, the settings, and who is calling."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Path, Request, Security
from fastapi.security import APIKeyHeader

from app.clients.products import ProductsCatalog
from app.clients.webhooks import WebhookSender
from app.core.config import Settings
from app.core.context import Caller, request_id_var
from app.core.database import Database
from app.core.errors import ValidationFailed
from app.models.stock_level import MAX_VERSION
from app.schemas.common import PRODUCT_ID_PATTERN
from app.services import idempotency
from app.services.answers import Answer
from app.services.idempotency import Work

# Declares the scheme for OpenAPI (Swagger's "Authorize" button); the check itself runs in
# middleware, so that it comes before body parsing.
api_key_scheme = APIKeyHeader(name="X-API-KEY", auto_error=False, scheme_name="ApiKey")

# Every dependency is `async def` although none awaits: FastAPI runs a plain `def` dependency
# in the thread pool, a thread hand-off per dependency per request (docs/performance.md).


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_catalog(request: Request) -> ProductsCatalog:
    catalog: ProductsCatalog = request.app.state.catalog
    return catalog


@dataclass(frozen=True, slots=True)
class Context:
    """What an /inventory route works with: the process's resources and who is calling."""

    database: Database
    catalog: ProductsCatalog
    settings: Settings
    caller: Caller

    async def once(self, key: str | None, request_fingerprint: str, work: Work) -> Answer:
        """Run `work` at most once per idempotency key, with the configured lifetimes."""
        return await idempotency.run_once(
            self.database,
            self.caller,
            key=key,
            request_fingerprint=request_fingerprint,
            ttl=self.settings.idempotency_ttl,
            lease=self.settings.idempotency_lease,
            work=work,
        )


async def get_context(
    request: Request, _key: Annotated[str | None, Security(api_key_scheme)] = None
) -> Context:
    """One dependency rather than one per resource: FastAPI does real work for each
    dependency of every request (docs/performance.md)."""
    state = request.app.state
    caller = Caller(actor=request.state.actor, request_id=request_id_var.get())
    return Context(state.database, state.catalog, state.settings, caller)


_ETAG = re.compile(r'^(?:W/)?"([0-9]{1,10})"$')


async def parse_if_match(
    if_match: Annotated[
        str | None,
        Header(
            max_length=64,
            description='`"<version>"` from the ETag (a version is 1 … '
            f"{MAX_VERSION:,}): change only at that version.",
            examples=['"3"'],
        ),
    ] = None,
) -> int | None:
    if if_match is None:
        return None
    match = _ETAG.match(if_match)
    if match is None or not 1 <= int(match.group(1)) <= MAX_VERSION:
        raise ValidationFailed(
            "If-Match must be a quoted version, as given by the ETag.",
            errors=[{"field": "If-Match", "message": f'Expected "<1 … {MAX_VERSION}>"'}],
        )
    return int(match.group(1))


Db = Annotated[Database, Depends(get_database)]
Catalog = Annotated[ProductsCatalog, Depends(get_catalog)]
Ctx = Annotated[Context, Depends(get_context)]


async def get_webhook_sender(request: Request) -> WebhookSender:
    sender: WebhookSender = request.app.state.webhook_sender
    return sender


Webhooks = Annotated[WebhookSender, Depends(get_webhook_sender)]
IfMatch = Annotated[int | None, Depends(parse_if_match)]
ProductIdPath = Annotated[
    str, Path(pattern=PRODUCT_ID_PATTERN, description="1–64 characters of [A-Za-z0-9._-].")
]
