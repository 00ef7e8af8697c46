from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from app.schemas.common import PrintableText, Timestamp
from app.schemas.events import EVENT_TYPES

WILDCARD = "*"
Description = Annotated[str, PrintableText, StringConstraints(min_length=1, max_length=200)]


def _known_types(value: list[str]) -> list[str]:
    unknown = [t for t in value if t != WILDCARD and t not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)} or *")
    return list(dict.fromkeys(value))


EventType = Annotated[str, WithJsonSchema({"type": "string", "enum": [*EVENT_TYPES, WILDCARD]})]
EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=20, examples=[["*"]])]

# What the service takes as a webhook URL, as far as a pattern can say it: `http` or `https`
# (any case) and a host. It also refuses (422) hosts that are no valid name or address, ports
# outside 1-65535 and addresses that are not globally reachable, which no pattern can say.
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+"


class WebhookIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://shop.example/hooks/inventory",
                    "events": ["stock.low", "purchase.completed"],
                    "description": "the shop",
                }
            ]
        },
    )

    url: str = Field(
        min_length=1,
        max_length=2000,
        description=(
            "`http://` or `https://` URL whose host is a valid DNS name or an IP address, "
            "with a port in 1-65535 if any."
        ),
        json_schema_extra={"pattern": URL_PATTERN},
    )
    events: EventTypes
    description: Description | None = None

    @field_validator("events")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        return _known_types(value)


class WebhookPatch(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"enabled": False}]})

    enabled: StrictBool | None = None
    events: EventTypes | None = None
    description: Description | None = None

    @field_validator("events")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _known_types(value)


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(description="Why the service disabled it, if it did.")
    failing_since: Timestamp | None = Field(
        description="The first failed attempt since the last delivered one."
    )
    created_at: Timestamp
    updated_at: Timestamp


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="`whsec_` + base64: the signing key. Shown only in this answer.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class AttemptOut(BaseModel):
    id: str
    event_id: str
    attempted_at: Timestamp
    status_code: int | None = Field(description="The receiver's status; null when no answer.")
    error: str | None = Field(description="Why no answer came (timeout, refused, …).")
    duration_ms: float
    next_attempt_at: Timestamp | None = Field(
        description="When it is tried again; null once delivered or given up."
    )
