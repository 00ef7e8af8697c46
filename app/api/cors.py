"""CORS for the configured origins, and for no one else."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send


class AllowedOriginsCors:
    """Starlette's CORS for the origins allowed; a preflight from any other origin reaches
    the service as if CORS were off (an `OPTIONS` request: a problem such as 405
    `method-not-allowed`, or 401 without a key, with no CORS header), rather than Starlette's
    bare 400 `text/plain`. The browser refuses the cross-origin request all the same: nothing
    in the answer allows the origin.
    """

    def __init__(self, app: ASGIApp, /, **options: Any) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            preflight = "access-control-request-method" in headers
            if origin is not None and preflight and not self.cors.is_allowed_origin(origin):
                await self.app(scope, receive, send)
                return
        await self.cors(scope, receive, send)
