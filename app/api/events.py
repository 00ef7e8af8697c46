"""The events feed, for consumers that pull."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.api.deps import DatabaseDep
from app.api.docs import INVENTORY, problems
from app.api.routing import ResourceRoute, resource_type
from app.schemas.events import EVENT_ID_PATTERN, EVENT_TYPES, EventsPage
from app.services import events

router = APIRouter(prefix="/events", tags=["events"], route_class=ResourceRoute)

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


@router.get("", summary="The events feed", responses=problems(*INVENTORY))
@resource_type("events")
async def list_events(
    database: DatabaseDep,
    after: Annotated[
        str | None,
        Query(
            max_length=64,
            description="The id of the last event seen; omitted: from the start.",
            pattern=EVENT_ID_PATTERN,
        ),
    ] = None,
    type: Annotated[EventType | None, Query(description="Only events of this type.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
) -> EventsPage:
    """Events oldest first. Pass the id of the last event you saw as `after` to get the next
    ones: ids grow in commit order, so a consumer paging this way sees every event once.
    Events of one transaction come together, in the order they happened."""
    return await events.list_events(database, after=after, type_=type, limit=limit)
