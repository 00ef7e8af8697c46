"""The route class of every resource route, and the JSON:API types it carries.

A resource route names, with `@resource_type` under its router decorator, the JSON:API type
of the resources it answers with and of the one its body carries; the types live on the
route, where `JsonApiMiddleware` and the body reader find them. Its body is read as strict
JSON (`strict_json`), or as a JSON:API document whose attributes the route then sees.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from app.api import jsonapi
from app.api.strict_json import StrictJsonRequest
from app.core.errors import MalformedJson, NotAcceptable

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

_TYPES = "__jsonapi_types__"


@dataclass(frozen=True)
class ResourceTypes:
    answers: str
    takes: str | None


def resource_type(answers: str, *, takes: str | None = None) -> Callable[[Endpoint], Endpoint]:
    """The JSON:API type of the resources a route answers with and, if it has a body, of
    the resource that body carries. Goes under the router's decorator."""

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _TYPES, ResourceTypes(answers, takes))
        return endpoint

    return mark


class ResourceRoute(APIRoute):
    """A route of a resource: its JSON:API types, answers negotiated (406 when `Accept`
    names only JSON:API variants we cannot give), and its body sent as JSON or JSON:API (415
    otherwise) and parsed strictly."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        types = getattr(endpoint, _TYPES, None)
        if not isinstance(types, ResourceTypes):
            raise TypeError(f"{path}: put @resource_type(...) under the router's decorator")
        if (self.body_field is None) != (types.takes is None):
            raise TypeError(f"{path}: `takes` names the type of a body, and only of one")
        self.resource_type = types.answers
        self.body_type = types.takes
        # The resource a body changes is the one its path ends with (PUT /inventory/7); a
        # body posted to a collection or an action is a new resource, with no id yet.
        last = path.rsplit("/", 1)[-1]
        self.body_id_parameter = last[1:-1] if last.startswith("{") else None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def resource_handler(request: Request) -> Response:
            if (
                jsonapi.negotiate(request.headers.get("accept"))
                is jsonapi.Negotiated.NOT_ACCEPTABLE
            ):
                raise NotAcceptable(
                    f"{jsonapi.MEDIA_TYPE} is accepted only without parameters other than "
                    "`profile` (no JSON:API extension is supported); or accept application/json."
                )
            if self.body_type is None:
                return await handler(request)
            body: StrictJsonRequest
            if jsonapi.body_is_jsonapi(request.headers.get("content-type")):
                body = _JsonApiBody(
                    request, resource_type=self.body_type, resource_id=self._body_id(request)
                )
            else:
                body = StrictJsonRequest(request.scope, request.receive)
            if not await body.body():
                raise MalformedJson("The request body is empty.", reason="Empty body")
            # Unwrapped now: inside FastAPI's own reading, our refusals would become a bare
            # 400. A body that is no JSON at all is left for FastAPI to report as such.
            with suppress(json.JSONDecodeError):
                await body.json()
            return await handler(body)

        return resource_handler

    def _body_id(self, request: Request) -> str | None:
        if self.body_id_parameter is None:
            return None
        value = request.path_params.get(self.body_id_parameter)
        return value if isinstance(value, str) else None


class _JsonApiBody(StrictJsonRequest):
    """A body sent as a JSON:API document: the route sees its one resource's attributes."""

    def __init__(self, request: Request, *, resource_type: str, resource_id: str | None) -> None:
        super().__init__(request.scope, request.receive)
        self._resource_type = resource_type
        self._resource_id = resource_id

    async def json(self) -> Any:
        if not hasattr(self, "_attributes"):
            self._attributes = jsonapi.unwrap(
                await super().json(),
                resource_type=self._resource_type,
                resource_id=self._resource_id,
            )
        return self._attributes


def body_types(routes: Sequence[BaseRoute]) -> dict[str, str]:
    """The JSON:API type each resource route's body carries, by "METHOD /path"."""
    return {
        f"{method} {context.path}": route.body_type
        for context in iter_route_contexts(routes)
        if isinstance(route := context.original_route, ResourceRoute)
        and route.body_type is not None
        for method in route.methods or ()
    }
