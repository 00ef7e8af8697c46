"""A products service that knows every product, as a raw ASGI app: as cheap as we can make it,
so the benchmark measures the inventory service and not its neighbour.

    uvicorn bench.fake_catalog:app --port 8003
"""

from __future__ import annotations

import json

from starlette.types import Receive, Scope, Send

_JSON = [(b"content-type", b"application/json")]
_PREFIX = "/products/"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path: str = scope["path"]
    status = 200
    if path.startswith(_PREFIX):
        product_id = path[len(_PREFIX) :]
        body = json.dumps({"id": product_id, "name": f"Product {product_id}", "price": 9.5})
    elif path == "/health":
        body = '{"status":"ok"}'
    else:
        status, body = 404, '{"detail":"not found"}'
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": body.encode()})
