"""The service as `make fuzz` runs it: its settings from the environment, on uvicorn (which
takes the app built here, with its own webhook sender), and webhook URLs never resolved.

Generated webhook URLs name hosts anywhere. Resolving them would send a DNS query off the
machine for each, and an accepted public address would receive deliveries; here every URL
is taken and every delivery goes to 127.0.0.1 at the URL's port, so the endpoint
operations can be reached and nothing leaves the machine.
"""

from __future__ import annotations

import argparse

import uvicorn
import yarl

from app.clients.webhooks import WebhookSender
from app.core.config import load_settings
from app.main import create_app


class LoopbackSender(WebhookSender):
    async def check(self, url: yarl.URL) -> str:
        return "127.0.0.1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    settings = load_settings()
    sender = LoopbackSender(timeout_seconds=settings.webhook_timeout_seconds, allowed_hosts=())
    uvicorn.run(
        create_app(settings, webhook_sender=sender),
        host=arguments.host,
        port=arguments.port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
