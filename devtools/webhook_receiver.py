"""A webhook receiver for watching deliveries arrive on this machine.

    python -m devtools.webhook_receiver --listen 127.0.0.1:8004 --secret whsec_...

Prints one line per delivery (event type, `webhook-id`, whether the signature is valid) and
answers 204 when the signature is valid, 401 when it is not, so the service's deliveries log
shows which. Standard library only: the verification below is what a receiver written in
any language does (Standard Webhooks).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Older timestamps are refused, so a recorded delivery cannot be replayed later.
TOLERANCE_SECONDS = 300


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether `webhook-signature` holds a v1 signature of this delivery by `secret`."""
    message_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(expected, signature.removeprefix("v1,"))
        for signature in headers.get("webhook-signature", "").split()
        if signature.startswith("v1,")
    )


def handler_for(secret: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            valid = verify(secret, headers, body)
            try:
                kind = json.loads(body).get("type", "?")
            except ValueError:
                kind = "(not JSON)"
            verdict = "signature valid" if valid else "signature INVALID"
            print(f"{kind} {headers.get('webhook-id', '-')} {verdict}", flush=True)
            self.send_response(204 if valid else 401)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """The line above says all; no access log."""

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print signed webhook deliveries as they come.")
    parser.add_argument("--listen", default="127.0.0.1:8004", help="HOST:PORT")
    parser.add_argument("--secret", required=True, help="the endpoint's whsec_… secret")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), handler_for(args.secret))
    print(f"receiving webhooks on http://{args.listen}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
