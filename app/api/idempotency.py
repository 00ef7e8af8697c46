"""Idempotent routes: the `Idempotency-Key` header, and answers rendered from what was kept.

A route that takes a key claims it around its work (`IdempotentRequest.claim`): the request
is fingerprinted by its method, its path and what it asks for; the service keeps its result
with the key in the unit of work of its effect; the route renders its answer from that result
with one function, the first time and on a repeat, so a repeat gets the same status, headers
and body back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse

from app.api.deps import SettingsDep
from app.core.config import Settings
from app.core.context import Caller
from app.core.database import Database
from app.core.errors import PROBLEM_MEDIA_TYPE, ProblemError
from app.repositories.idempotency_keys import KeyHolder
from app.services import idempotency
from app.services.idempotency import Replay

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7e]+$",
        description="Repeat the request with the same key to get the first answer again, "
        "with `Idempotent-Replayed: true`. Keys are kept at least 24 hours.",
    ),
]


@dataclass(frozen=True, slots=True)
class Answer:
    """A route's answer as it is sent."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False

    def response(self) -> JSONResponse:
        headers = dict(self.headers)
        if self.replayed:
            headers["Idempotent-Replayed"] = "true"
        media_type = PROBLEM_MEDIA_TYPE if self.status >= 400 else "application/json"
        return JSONResponse(self.body, self.status, headers=headers, media_type=media_type)


# A route's answer to a result its service kept (JSON) and whether the request created it.
Render = Callable[[dict[str, Any], bool], Answer]


@dataclass(frozen=True, slots=True)
class Claimed:
    """The request's hold on its key: `key` to hand to the service (None without a header),
    or the `replay` of the first request's answer."""

    key: KeyHolder | None
    replay: Replay | None = None

    def replayed(self, render: Render) -> Answer:
        """The first request's answer again: rendered by `render` from its kept result, or as
        it was kept (a refusal, or an answer kept before results were)."""
        assert self.replay is not None
        kept = json.loads(self.replay.text)
        if "result" in kept:
            answer = render(kept["result"], kept["created"])
        else:
            answer = Answer(kept["status"], kept["body"], kept["headers"])
        return replace(answer, replayed=True)


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """This request, as far as answering it once per `Idempotency-Key` goes."""

    settings: Settings
    method: str
    path: str
    key: str | None

    @asynccontextmanager
    async def claim(self, database: Database, caller: Caller, asked: Any) -> AsyncIterator[Claimed]:
        """Hold the key of the caller while the block runs the work, or replay. `asked`: what
        the request asks for beyond its method and path (its body, its preconditions). A
        final refusal raised in the block is kept for repeats; any other error frees the key."""
        if self.key is None:
            yield Claimed(None)
            return
        claimed = await idempotency.claim(
            database,
            caller.actor,
            key=self.key,
            request_fingerprint=idempotency.fingerprint(self.method, self.path, asked),
            ttl=self.settings.idempotency_ttl,
            lease=self.settings.idempotency_lease,
        )
        if isinstance(claimed, Replay):
            yield Claimed(None, claimed)
            return
        try:
            yield Claimed(claimed)
        except ProblemError as error:
            await idempotency.refused(database, claimed, error, caller.request_id)
            raise
        except BaseException:
            await idempotency.release(database, claimed)
            raise


async def idempotent_request(
    request: Request, settings: SettingsDep, idempotency_key: IdempotencyKeyHeader = None
) -> IdempotentRequest:
    return IdempotentRequest(settings, request.method, request.scope["path"], idempotency_key)


Idempotency = Annotated[IdempotentRequest, Depends(idempotent_request)]
