"""Webhook endpoints over HTTP: subscribe, read, change, unsubscribe, the log, a test event."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from app.api.deps import DatabaseDep, WebhookSenderDep
from app.api.docs import INVENTORY, WITH_BODY, links_to, problems
from app.api.params import Cursor, Limit
from app.api.routing import ResourceRoute, resource_type
from app.schemas.common import Page
from app.schemas.events import EventOut
from app.schemas.webhooks import AttemptOut, WebhookCreated, WebhookIn, WebhookOut, WebhookPatch
from app.services import webhooks

router = APIRouter(
    prefix="/webhooks",
    tags=["webhooks"],
    route_class=ResourceRoute,
)

EndpointId = Annotated[str, Path(description="The endpoint's id.")]


@router.post(
    "",
    summary="Subscribe an endpoint",
    status_code=status.HTTP_201_CREATED,
    responses={
        201: {
            "description": "Created",
            "links": links_to(
                "endpoint_id",
                "get_webhook",
                "update_webhook",
                "delete_webhook",
                "list_deliveries",
                "send_test_event",
            ),
        },
        **problems(*INVENTORY, *WITH_BODY),
    },
)
@resource_type("webhook-endpoints", takes="webhook-endpoints")
async def create_webhook(
    body: WebhookIn, database: DatabaseDep, sender: WebhookSenderDep, response: Response
) -> WebhookCreated:
    """Register a URL for these event types (`["*"]`: all). The answer carries the signing
    `secret`, shown only here. The endpoint receives the events committed from now on.
    A host that is no valid name or address, a port outside 1-65535, and every address that
    is not globally reachable (loopback, private, link-local, CGNAT, metadata, the IPv6 forms
    that carry such an IPv4 address, site-local, …) are refused (422), the addresses unless
    the host is listed in `WEBHOOK_ALLOWED_HOSTS`."""
    created = await webhooks.create_endpoint(database, sender, body=body)
    response.headers["Location"] = f"/webhooks/{created.id}"
    return created


@router.get("", summary="List webhook endpoints", responses=problems(*INVENTORY))
@resource_type("webhook-endpoints")
async def list_webhooks(
    database: DatabaseDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[WebhookOut]:
    """Every endpoint, without its secret."""
    return await webhooks.list_endpoints(database, limit=limit, cursor=cursor)


@router.get(
    "/{endpoint_id}",
    summary="Get a webhook endpoint",
    responses=problems(*INVENTORY, "not-found"),
)
@resource_type("webhook-endpoints")
async def get_webhook(endpoint_id: EndpointId, database: DatabaseDep) -> WebhookOut:
    """One endpoint, without its secret."""
    return await webhooks.get_endpoint(database, endpoint_id=endpoint_id)


@router.patch(
    "/{endpoint_id}",
    summary="Change a webhook endpoint",
    responses=problems(*INVENTORY, *WITH_BODY, "not-found"),
)
@resource_type("webhook-endpoints", takes="webhook-endpoints")
async def update_webhook(
    endpoint_id: EndpointId, body: WebhookPatch, database: DatabaseDep
) -> WebhookOut:
    """Turn it off or on (`enabled`), or change its `events` or `description`. Turned back
    on, it receives the events committed from then on."""
    return await webhooks.update_endpoint(database, endpoint_id=endpoint_id, patch=body)


@router.delete(
    "/{endpoint_id}",
    summary="Unsubscribe an endpoint",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(*INVENTORY, "not-found"),
)
@resource_type("webhook-endpoints")
async def delete_webhook(endpoint_id: EndpointId, database: DatabaseDep) -> Response:
    """Forget the endpoint, its pending deliveries and its log."""
    await webhooks.delete_endpoint(database, endpoint_id=endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{endpoint_id}/deliveries",
    summary="An endpoint's deliveries log",
    responses=problems(*INVENTORY, "not-found"),
)
@resource_type("delivery-attempts")
async def list_deliveries(
    endpoint_id: EndpointId, database: DatabaseDep, limit: Limit = 50, cursor: Cursor = None
) -> Page[AttemptOut]:
    """Every delivery attempt, newest first: the event, the status code or error, how long
    it took, when, and when the next attempt is due."""
    return await webhooks.list_attempts(
        database, endpoint_id=endpoint_id, limit=limit, cursor=cursor
    )


@router.post(
    "/{endpoint_id}/test",
    summary="Send a test event",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(*INVENTORY, "not-found"),
)
@resource_type("events")
async def send_test_event(endpoint_id: EndpointId, database: DatabaseDep) -> EventOut:
    """Queue a `webhook.test` event for this endpoint, delivered (and retried) like any
    other; it is not in the feed. Its attempts show in the deliveries log."""
    return await webhooks.send_test_event(database, endpoint_id=endpoint_id)
