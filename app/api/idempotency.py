"""Idempotent routes: the `Idempotency-Key` header, and answers kept for replay.

Every route that takes a key answers through `Idempotency`: the request is fingerprinted by
its method, its path and what it asks for, and its answer is written down with the key in
the unit of work of its effect, so a repeat gets the same status, headers and body back.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse

from app.api.deps import SettingsDep
from app.core.config import Settings
from app.core.context import Caller
from app.core.database import Database
from app.core.errors import PROBLEM_MEDIA_TYPE, ProblemError, problem_body
from app.services import idempotency
from app.services.idempotency import Claim, Replay, Written

T = TypeVar("T")

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
    """A route's answer as it is sent, and as it is kept for a repeat of the request."""

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

    def written(self) -> Written:
        text = json.dumps({"status": self.status, "headers": self.headers, "body": self.body})
        return Written(self.status, text)

    @classmethod
    def replay(cls, replay: Replay) -> Answer:
        data = json.loads(replay.text)
        return cls(data["status"], data["body"], data["headers"], replayed=True)


@dataclass(frozen=True, slots=True)
class _Writer(Generic[T]):
    answer_to: Callable[[T], Answer]
    request_id: str

    def result(self, result: T, /) -> Written:
        return self.answer_to(result).written()

    def refusal(self, error: ProblemError, /) -> Written:
        body = problem_body(error, self.request_id)
        return Answer(error.status, body, dict(error.headers)).written()


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """This request, as far as answering it once per `Idempotency-Key` goes."""

    settings: Settings
    method: str
    path: str
    key: str | None

    async def answer(
        self,
        database: Database,
        caller: Caller,
        asked: Any,
        work: Callable[[Claim[T] | None], Awaitable[T]],
        answer_to: Callable[[T], Answer],
    ) -> Answer:
        """Run `work` at most once per key of the caller, or replay the first answer.
        `asked`: what the request asks for beyond its method and path (its body, its
        preconditions); `answer_to`: the answer to a result of `work`."""
        outcome = await idempotency.run_once(
            database,
            caller.actor,
            key=self.key,
            request_fingerprint=idempotency.fingerprint(self.method, self.path, asked),
            ttl=self.settings.idempotency_ttl,
            lease=self.settings.idempotency_lease,
            writer=_Writer(answer_to, caller.request_id),
            work=work,
        )
        if isinstance(outcome, Replay):
            return Answer.replay(outcome)
        return answer_to(outcome)


async def idempotent_request(
    request: Request, settings: SettingsDep, idempotency_key: IdempotencyKeyHeader = None
) -> IdempotentRequest:
    return IdempotentRequest(settings, request.method, request.scope["path"], idempotency_key)


Idempotency = Annotated[IdempotentRequest, Depends(idempotent_request)]
