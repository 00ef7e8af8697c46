"""Fixtures for testing the products client against a real HTTP server of our own."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.fake_products import FakeProductsServer


@pytest.fixture(scope="session")
def fake_products_server() -> Iterator[FakeProductsServer]:
    """One running fake for the whole session; use `fake_products`, which resets it."""
    with FakeProductsServer() as server:
        yield server


@pytest.fixture
def fake_products(fake_products_server: FakeProductsServer) -> FakeProductsServer:
    """The running fake products server, back to plain answers from the demo catalog."""
    fake_products_server.reset()
    return fake_products_server


@pytest.fixture
def closed_port_url() -> Iterator[str]:
    """A URL on 127.0.0.1 where connections are refused.

    The port stays bound (so nobody else takes it) but never listens, which makes the
    kernel refuse every connection at once.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
