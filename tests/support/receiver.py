"""A real webhook receiver on 127.0.0.1: it checks every signature and records what came."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, exists, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.core.config import Settings
from app.core.database import Database
from app.models.webhook import WebhookDelivery
from devtools.servers import serving
from tests.support.service import make_settings


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """Answers each request with `answer(n)` (n counts requests from 0): a status, or a delay
    in seconds before a 204."""

    url: str = ""
    secrets: list[str] = field(default_factory=list)
    answer: Callable[[int], int | float] = lambda _n: 204
    requests: int = 0
    delivered: list[Received] = field(default_factory=list)
    bad_signatures: int = 0

    @property
    def event_ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.delivered]

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        return [r.body for r in self.delivered if type_ is None or r.body["type"] == type_]

    async def wait_for(self, count: int, *, seconds: float = 10.0) -> None:
        """Until `count` distinct events were delivered; fails past the deadline."""
        async with asyncio.timeout(seconds):
            while len(set(self.event_ids)) < count:  # noqa: ASYNC110 - polling with a deadline
                await asyncio.sleep(0.02)

    async def handle(self, request: Request) -> Response:
        number = self.requests
        self.requests += 1
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not any(_valid(secret, body, headers) for secret in self.secrets):
            self.bad_signatures += 1
            return Response(status_code=400)
        answer = self.answer(number)
        if isinstance(answer, float):
            await asyncio.sleep(answer)
            answer = 204
        if 200 <= answer < 300:
            self.delivered.append(Received(headers, json.loads(body)))
        return Response(status_code=answer)


def _valid(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


@asynccontextmanager
async def receiving(
    receiver: Receiver | None = None,
    *,
    port: int | None = None,
    tls: tuple[Path, Path] | None = None,
) -> AsyncIterator[Receiver]:
    """`receiver` served on a loopback port (a free one unless given), in this event loop;
    over HTTPS with `tls` (its certificate chain and key files)."""
    receiver = receiver or Receiver()
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    config: dict[str, Any] = {"timeout_graceful_shutdown": 1} | ({"port": port} if port else {})
    if tls is not None:
        config |= {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])}
    async with serving(app, **config) as (host, free):
        receiver.url = f"{'https' if tls else 'http'}://{host}:{port or free}/hook"
        yield receiver


# The webhook timeout of the services that deliver to these receivers, in seconds.
TIMEOUT = 1.0


def receiver_settings(database_url: str) -> Settings:
    """Settings under which webhooks reach a receiver on 127.0.0.1, and are retried soon."""
    return make_settings(
        database_url,
        webhook_allowed_hosts=["127.0.0.1"],
        webhook_retry_base_seconds=0.05,
        webhook_timeout_seconds=TIMEOUT,
    )


async def subscribe(
    client: httpx.AsyncClient, receiver: Receiver, events: list[str] | None = None
) -> dict[str, Any]:
    response = await client.post("/webhooks", json={"url": receiver.url, "events": events or ["*"]})
    assert response.status_code == 201, response.text
    receiver.secrets.append(response.json()["secret"])
    return dict(response.json())


async def settled(db: Database, endpoint: dict[str, Any]) -> None:
    """Until no delivery to `endpoint` is pending: every event handed to it so far has been
    sent, and its answer recorded. The dispatcher hands out events in the feed's order, so
    once a later event arrived, any earlier one it handed out has arrived too."""

    def pending(connection: Connection) -> bool:
        query = select(
            exists().where(
                WebhookDelivery.endpoint_id == endpoint["id"], WebhookDelivery.status == "pending"
            )
        )
        return bool(connection.scalar(query))

    async with asyncio.timeout(30):
        while await db.read(pending):  # noqa: ASYNC110 - the outbox offers no event
            await asyncio.sleep(0.02)
