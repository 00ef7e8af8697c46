"""The application: settings, resources in the lifespan, middleware, routes, error handlers.

`create_app(settings)` builds one; `app.main:app` (what `uvicorn app.main:app` serves) is the
app of the environment's settings, built when first asked for rather than at import, so that
importing this module reads no environment and configures nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app import __version__
from app.api import events, health, metrics, purchases, reservations, stock, webhooks
from app.api.auth import ApiKeyMiddleware, document_api_key
from app.api.cors import AllowedOriginsCors
from app.api.docs import add_redoc, finish_document, operation_id
from app.api.errors import install_error_handlers
from app.api.health import probe_database
from app.api.jsonapi import JsonApiMiddleware
from app.api.middleware import (
    BodyLimitMiddleware,
    HeadMiddleware,
    LoadSheddingMiddleware,
    RequestContextMiddleware,
)
from app.clients import webhooks as webhook_client
from app.clients.products import build_catalog, build_http_client
from app.core.config import Settings, load_settings
from app.core.database import Database
from app.core.logging import configure_logging
from app.core.migrations import head_revision
from app.schemas.purchases import PurchaseOut
from app.schemas.stock import MovementOut, StockLevelOut
from app.services.deliveries import Dispatcher, purge_outbox
from app.services.expiry import expire_reservations, purge_reservations
from app.services.idempotency import purge_idempotency_keys

logger = logging.getLogger("app")

API_DESCRIPTION = """\
JSON in and out; errors are RFC 9457 problems (`application/problem+json`).

Bodies are sent as `Content-Type: application/json`. With `Accept: application/vnd.api+json`
every resource, list and error is answered as a JSON:API 1.1 document instead, and bodies sent
as `Content-Type: application/vnd.api+json` (`{"data": {"type", "attributes"}}`) are accepted.
"""

PURGE_EVERY = timedelta(hours=1)
EXPOSED_HEADERS = ["ETag", "Location", "X-Request-ID", "Idempotent-Replayed", "Retry-After"]


def create_app(
    settings: Settings | None = None,
    *,
    webhook_sender: webhook_client.WebhookSender | None = None,
) -> FastAPI:
    """The service. `webhook_sender`, when given, sends the webhooks (and checks their
    URLs) instead of one built from the settings."""
    settings = settings or load_settings()
    given_sender = webhook_sender
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database.from_settings(
            settings, schema_revision=head_revision(settings.database_url)
        )
        http_client = build_http_client(settings) if settings.products_service_url else None
        webhook_sender = given_sender or webhook_client.WebhookSender.from_settings(settings)
        try:
            await _report_database(database)
            app.state.settings = settings
            app.state.database = database
            app.state.catalog = build_catalog(settings, http_client)
            app.state.webhook_sender = webhook_sender
            dispatcher = Dispatcher(
                database,
                app.state.webhook_sender,
                retry_base_seconds=settings.webhook_retry_base_seconds,
                timeout_seconds=settings.webhook_timeout_seconds,
                # Retries are never due sooner than the base delay: no need to look sooner.
                poll_seconds=min(1.0, settings.webhook_retry_base_seconds),
            )
            _warn_about_open_doors(settings)
            background = [
                asyncio.create_task(purge_idempotency_keys(database)),
                asyncio.create_task(expire_reservations(database)),
                asyncio.create_task(purge_reservations(database, settings.reservation_retention)),
                asyncio.create_task(dispatcher.run()),
                asyncio.create_task(
                    purge_outbox(database, retention=settings.events_retention, every=PURGE_EVERY)
                ),
            ]
            yield
            for task in background:
                task.cancel()
            for task in background:
                with suppress(asyncio.CancelledError):
                    await task
        finally:
            await webhook_sender.close()
            if http_client is not None:
                await http_client.aclose()
            await database.dispose()

    # Swagger UI and ReDoc assets come from the fastapi-offline package and are served by the
    # service itself (under /static-offline-docs), so /docs works without internet access.
    app = FastAPIOffline(
        title="Inventory",
        version=__version__,
        summary="Stock levels, their ledger, and purchases that never oversell.",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        # A path with a trailing slash is another path (404): a redirect would be built from
        # the Host header, which points wherever the caller says.
        redirect_slashes=False,
        swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None},
        generate_unique_id_function=operation_id,
        redoc_url=None,
    )
    add_redoc(app)
    install_error_handlers(app)
    # Stock first: `/inventory/purchases/movements` then reads as the ledger of a product
    # `purchases`, a reserved id (422), rather than as a purchase named "movements"; and the
    # busiest routes are matched first.
    for router in (
        stock.router,
        purchases.router,
        reservations.router,
        events.router,
        webhooks.router,
        health.router,
        metrics.router,
    ):
        app.include_router(router)
    finish_document(app, examples_of=[StockLevelOut, MovementOut, PurchaseOut])
    # `ApiKeyMiddleware` asks for the key; the document says which operations need it.
    document_api_key(app)

    # Added innermost first: the request id is set before anything else runs.
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(ApiKeyMiddleware, keys=settings.actor_keys())
    # Outside authentication, so an overloaded process does not even hash keys; inside CORS,
    # so a browser can read the 503.
    if settings.max_requests_in_progress:
        app.add_middleware(LoadSheddingMiddleware, limit=settings.max_requests_in_progress)
    if settings.cors_origins:
        app.add_middleware(
            AllowedOriginsCors,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
        )
    # Outside authentication, the body limit and shedding, so their refusals are rewritten
    # for JSON:API clients too; inside HEAD, which then drops the rewritten body.
    app.add_middleware(JsonApiMiddleware)
    app.add_middleware(HeadMiddleware)
    app.add_middleware(RequestContextMiddleware)
    return app


async def _report_database(database: Database) -> None:
    """Start-up does not wait for the database (it may come later, and the service becomes
    ready by itself then); it only says how it found it."""
    error = await probe_database(database)
    if error is not None:
        logger.warning(
            "database not ready at start-up (%s): /ready and data routes answer 503 until it is",
            database.reason(error),
        )


def _warn_about_open_doors(settings: Settings) -> None:
    if not settings.actor_keys():
        logger.warning(
            "no API_KEY or API_KEYS set: the service is open to anyone (actor 'anonymous')"
        )
    if settings.products_service_url is None:
        logger.warning("PRODUCTS_SERVICE_URL is not set: standalone mode, products are not checked")


def __getattr__(name: str) -> FastAPI:
    """`app`: the app of the environment's settings, built on first use (a bad setting then
    stops the process with one line naming it)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    built = create_app()
    globals()["app"] = built
    return built
