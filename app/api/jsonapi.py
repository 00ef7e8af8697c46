"""JSON:API 1.1 at the edge: the same answers, as JSON:API documents for clients that ask.

The routes speak plain JSON and problem+json. A request with `Accept:
application/vnd.api+json` gets its answer rewritten by `JsonApiMiddleware`: a resource
becomes `{"data": {"type", "id", "attributes"}}`, a page `{"data": [...], "links":
{"next"}}`, a problem `{"errors": [{"status", "code", "title", "detail", "meta"}]}`. A body
sent as `application/vnd.api+json` is unwrapped to its `attributes` before validation
(`unwrap`), so the routes, their validation and their idempotency fingerprints see one
shape whatever the client speaks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import (
    PROBLEM_MEDIA_TYPE,
    TypeMismatch,
    UnsupportedMediaType,
    ValidationFailed,
)

MEDIA_TYPE = "application/vnd.api+json"
JSON_MEDIA_TYPE = "application/json"

# The member that is a resource's id; it leaves `attributes`, where JSON:API forbids `id`.
_ID_MEMBERS: Mapping[str, str] = {"stock-levels": "product_id"}
# Members renamed in `attributes`, which JSON:API forbids to hold a `type` (§7.2.2.1).
_RENAMED: Mapping[str, Mapping[str, str]] = {"events": {"type": "event_type"}}
# Media type parameters JSON:API allows besides `ext`; no extension is supported, so `ext`
# makes an instance unusable. `charset` is accepted as it is for application/json.
_ALLOWED_PARAMETERS = frozenset({"profile", "charset"})


class Negotiated(Enum):
    JSON = "json"
    JSONAPI = "jsonapi"
    NOT_ACCEPTABLE = "not-acceptable"


def _media_type(value: str) -> tuple[str, dict[str, str]]:
    kind, *parameters = value.split(";")
    params: dict[str, str] = {}
    for parameter in parameters:
        name, _, raw = parameter.partition("=")
        params[name.strip().lower()] = raw.strip().strip('"')
    return kind.strip().lower(), params


def negotiate(accept: str | None) -> Negotiated:
    """JSON:API when `Accept` names its media type usably (JSON:API 1.1 §5.2.2).

    `q` is a weight (RFC 9110 §12.4.2), not a media type parameter: an instance weighted 0
    is not acceptable, as if absent. Instances with parameters other than `profile` are
    ignored; when every acceptable instance is such, the answer is 406.
    """
    if not accept or MEDIA_TYPE not in accept.lower():
        return Negotiated.JSON
    instances = [
        params for kind, params in map(_media_type, accept.split(",")) if kind == MEDIA_TYPE
    ]
    acceptable = [params for params in instances if _weight(params.pop("q", "1")) > 0]
    if any(set(params) <= {"profile"} for params in acceptable):
        return Negotiated.JSONAPI
    return Negotiated.NOT_ACCEPTABLE if acceptable else Negotiated.JSON


def _weight(value: str) -> float:
    """A `q` value; one that is no number counts as 1, the weight of an instance without."""
    try:
        return float(value)
    except ValueError:
        return 1.0


def body_is_jsonapi(content_type: str | None) -> bool:
    """Whether a request body is JSON:API (else plain JSON); 415 for any other media type."""
    kind, params = _media_type(content_type or "")
    charset = params.get("charset", "utf-8").lower()
    if kind == JSON_MEDIA_TYPE and set(params) <= {"charset"} and charset == "utf-8":
        return False
    if kind == MEDIA_TYPE and set(params) <= _ALLOWED_PARAMETERS and charset == "utf-8":
        return True
    raise UnsupportedMediaType(
        "Send the body as JSON, with `Content-Type: application/json` (or JSON:API, with "
        f"`Content-Type: {MEDIA_TYPE}`)"
        + (f"; {content_type!r} is not accepted." if content_type else "; it had none."),
    )


def unwrap(document: Any, *, resource_type: str, resource_id: str | None) -> Any:
    """The attributes of a JSON:API document's one resource.

    `data.type` must be the type the route takes and `data.id`, when sent, the id its path
    names (new purchases and adjustments have none yet): otherwise 409, as JSON:API says.
    """
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        raise _shape_error("data", "Expected a resource object")
    if not isinstance(data.get("type"), str):
        raise _shape_error("data.type", "Expected a string")
    if data["type"] != resource_type:
        raise TypeMismatch(f"This route takes {resource_type!r} resources, not {data['type']!r}.")
    if "id" in data and data["id"] != resource_id:
        expected = "no id" if resource_id is None else f"the id {resource_id!r} of its path"
        raise TypeMismatch(f"This {resource_type!r} resource takes {expected}, not {data['id']!r}.")
    attributes = data.get("attributes", {})
    if not isinstance(attributes, dict):
        raise _shape_error("data.attributes", "Expected an object")
    return attributes


def _shape_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        "The body is not a JSON:API document with one resource.",
        errors=[{"field": field, "message": message}],
    )


def resource(resource_type: str, body: Mapping[str, Any]) -> dict[str, Any]:
    id_member = _ID_MEMBERS.get(resource_type, "id")
    renamed = _RENAMED.get(resource_type, {})
    attributes = {
        renamed.get(name, name): value for name, value in body.items() if name != id_member
    }
    return {"type": resource_type, "id": str(body[id_member]), "attributes": attributes}


def document(resource_type: str, body: Any, scope: Scope) -> dict[str, Any]:
    """The JSON:API document of a plain answer: one resource, or a page of them."""
    if isinstance(body, dict) and set(body) == {"items", "next_cursor"}:
        cursor = body["next_cursor"]
        return {
            "data": [resource(resource_type, item) for item in body["items"]],
            "links": {"next": None if cursor is None else _page_link(scope, cursor)},
        }
    # The events feed pages by `after`, the id of its last event, not by a cursor.
    if isinstance(body, dict) and set(body) == {"items"}:
        return {"data": [resource(resource_type, item) for item in body["items"]]}
    return {"data": resource(resource_type, body)}


def _page_link(scope: Scope, cursor: str) -> str:
    pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    query = [(name, value) for name, value in pairs if name != "cursor"]
    return f"{scope['path']}?{urlencode([*query, ('cursor', cursor)])}"


def errors(problem: Mapping[str, Any]) -> dict[str, Any]:
    """A problem document as JSON:API errors; the problem's extensions go to `meta`."""
    slug = str(problem.get("type", "")).removeprefix("/problems/")
    core = {"type", "title", "status", "detail"}
    return {
        "errors": [
            {
                "status": str(problem.get("status")),
                "code": slug,
                "title": problem.get("title"),
                "detail": problem.get("detail"),
                "links": {"type": problem.get("type")},
                "meta": {name: value for name, value in problem.items() if name not in core},
            }
        ]
    }


class JsonApiMiddleware:
    """Rewrites answers as JSON:API documents for requests that accept them.

    Outside authentication and the body limit, so their refusals are rewritten too; only
    plain JSON of a resource route and problem documents are rewritten: `/health`, `/ready`
    and `/metrics` are not resources and answer as they always do.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if negotiate(Headers(scope=scope).get("accept")) is not Negotiated.JSONAPI:
            await self.app(scope, receive, _varying_on_accept(send))
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await _send_rewritten(scope, start, b"".join(chunks), send)

        await self.app(scope, receive, rewrite)


def _varying_on_accept(send: Send) -> Send:
    """Caches must not hand a plain answer to a JSON:API client, nor the other way round."""

    async def send_varying(message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message).add_vary_header("Accept")
        await send(message)

    return send_varying


async def _send_rewritten(scope: Scope, start: Message, body: bytes, send: Send) -> None:
    headers = MutableHeaders(scope=start)
    content_type = _media_type(headers.get("content-type", ""))[0]
    # The route's own type (`ResourceRoute`); routes that are no resource have none.
    resource_type = getattr(scope.get("route"), "resource_type", None)
    rewritten: dict[str, Any] | None = None
    if body and content_type == PROBLEM_MEDIA_TYPE:
        rewritten = errors(json.loads(body))
    elif body and content_type == JSON_MEDIA_TYPE and isinstance(resource_type, str):
        rewritten = document(resource_type, json.loads(body), scope)
    if rewritten is not None:
        body = json.dumps(rewritten, separators=(",", ":"), ensure_ascii=False).encode()
        headers["content-type"] = MEDIA_TYPE
        headers["content-length"] = str(len(body))
    headers.add_vary_header("Accept")
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})
