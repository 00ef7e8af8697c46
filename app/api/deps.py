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
from app.schemas.common import PRODUCT_ID_RULE, ProductId
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


Db = Annotated[Database, Depends(get_database)]
Catalog = Annotated[ProductsCatalog, Depends(get_catalog)]
Ctx = Annotated[Context, Depends(get_context)]


async def get_webhook_sender(request: Request) -> WebhookSender:
    sender: WebhookSender = request.app.state.webhook_sender
    return sender


Webhooks = Annotated[WebhookSender, Depends(get_webhook_sender)]
IfMatch = Annotated[int | None, Depends(parse_if_match)]
ProductIdPath = Annotated[ProductId, Path(description=PRODUCT_ID_RULE + ".")]
