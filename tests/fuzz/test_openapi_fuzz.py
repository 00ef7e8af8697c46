"""Every documented operation, fuzzed from the OpenAPI document on every engine.

Schemathesis generates requests for each operation from the service's own OpenAPI
document — explicit examples, boundary values ("coverage") and random data, both valid
("positive") and invalid ("negative") — and sends them in-process, authenticated, to an app
running its real lifespan on a fresh database. Each answer must be no 5xx, a status the
operation documents, with the documented content type, headers and schema; invalid input
must be refused with a 4xx. New routes are fuzzed as soon as they are in the document.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.api.deps import get_webhook_sender
from app.clients.webhooks import WebhookSender
from app.main import create_app
from tests.support.service import API_KEY, client_for, make_settings

if TYPE_CHECKING:
    from schemathesis.specs.openapi.schemas import OpenApiCase

# Left out of `make test-fast`: several processes, a crash, or generated cases.
pytestmark = pytest.mark.slow

# Bounded so the whole fuzz run stays well under a minute per engine on two cores;
# FUZZ_EXAMPLES=500 explores further when hunting.
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

# The document does not depend on the database or the keys, so one built here serves all.
# The key goes in through the document's `ApiKey` scheme, so that negative cases may also
# leave it out (and must then get 401).
schema = schemathesis.openapi.from_dict(
    create_app(make_settings("sqlite:///unused-for-openapi.db")).openapi(),
    config=SchemathesisConfig.from_dict({"auth": {"openapi": {"ApiKey": {"api_key": API_KEY}}}}),
)


class InProcessClient:
    """The app with its real lifespan on an event loop of its own, called synchronously."""

    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient) -> None:
        self.portal = portal
        self.client = client

    def request(self, **kwargs: Any) -> httpx.Response:
        return self.portal.call(lambda: self.client.request(**kwargs))


@pytest.fixture
def fuzz_client(database_url: str) -> Iterator[InProcessClient]:
    # One INFO line per request would bury a failure's report.
    httpx_logger = logging.getLogger("httpx")
    level = httpx_logger.level
    httpx_logger.setLevel(logging.WARNING)
    app = create_app(make_settings(database_url))
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
        portal.wrap_async_context_manager(client_for(app)) as client,
    ):
        # Generated webhook URLs name hosts anywhere: nothing is resolved, so every one is
        # refused (422) without a DNS query leaving the machine.
        offline = WebhookSender(timeout_seconds=1, allowed_hosts=(), resolver=_no_dns)
        app.dependency_overrides[get_webhook_sender] = lambda: offline
        yield InProcessClient(portal, client)
    httpx_logger.setLevel(level)


async def _no_dns(host: str, _port: int) -> list[str]:
    raise OSError(f"{host} is not resolved in the fuzz run")


def _header_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


def _httpx_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Schemathesis serialises for `requests`; raw bodies are `content` in httpx."""
    # A falsy `json` (0, [], {}, "") is still a body to send; no operation takes cookies.
    arguments = {k: v for k, v in kwargs.items() if v is not None and k != "cookies"}
    # httpx encodes header values as ASCII; a raw client sends any byte, and so do we.
    arguments["headers"] = {
        name: _header_bytes(value) for name, value in arguments.get("headers", {}).items()
    }
    data = arguments.pop("data", None)
    if isinstance(data, bytes | str):
        arguments["content"] = data
    elif data is not None:
        arguments["data"] = data
    return arguments


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("FUZZ_RANDOM") is None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(
    case: OpenApiCase, fuzz_client: InProcessClient
) -> None:
    kwargs = case.as_transport_kwargs(base_url="http://test")
    response = fuzz_client.request(**_httpx_arguments(kwargs))
    case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)


def _operations() -> Iterator[tuple[str, dict[str, Any]]]:
    document = create_app(make_settings("sqlite:///unused-for-openapi.db")).openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield f"{method.upper()} {path}", operation


def test_problem_responses_are_documented_as_problem_json_only() -> None:
    for label, operation in _operations():
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and label != "GET /ready":
                assert list(response["content"]) == ["application/problem+json"], (label, status)


def test_every_inventory_operation_documents_401_and_503() -> None:
    for label, operation in _operations():
        if " /inventory" in label:
            assert {"401", "503"} <= set(operation["responses"]), label
