"""Webhooks to HTTPS receivers: a private CA the service is told to trust, and one it is not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import trustme

from app.core.config import Settings
from tests.support.receiver import TIMEOUT, receiving, subscribe
from tests.support.service import make_settings


def _certificate(ca: trustme.CA, directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 issued by `ca`: its chain and key files."""
    issued = ca.issue_cert("127.0.0.1")
    chain, key = directory / f"{name}-chain.pem", directory / f"{name}-key.pem"
    issued.private_key_and_cert_chain_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    return chain, key


@pytest.fixture
def private_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def settings(database_url: str, private_ca: trustme.CA, tmp_path: Path) -> Settings:
    ca_file = tmp_path / "private-ca.pem"
    private_ca.cert_pem.write_to_path(str(ca_file))
    return make_settings(
        database_url,
        webhook_allowed_hosts=["127.0.0.1"],
        webhook_retry_base_seconds=0.05,
        webhook_timeout_seconds=TIMEOUT,
        webhook_ca_file=str(ca_file),
    )


async def test_an_https_receiver_with_a_trusted_certificate_gets_signed_events(
    client: httpx.AsyncClient, private_ca: trustme.CA, tmp_path: Path
) -> None:
    async with receiving(tls=_certificate(private_ca, tmp_path, "receiver")) as receiver:
        assert receiver.url.startswith("https://")
        endpoint = await subscribe(client, receiver, ["stock.changed"])
        assert (await client.put("/inventory/5", json={"quantity": 3})).status_code == 201
        await receiver.wait_for(1)
    assert receiver.bad_signatures == 0
    [event] = receiver.events()
    assert event["data"]["quantity_after"] == 3
    log = (await client.get(f"/webhooks/{endpoint['id']}/deliveries")).json()["items"]
    assert [attempt["status_code"] for attempt in log] == [204]


async def test_a_certificate_the_service_does_not_trust_fails_the_attempt(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    stranger = trustme.CA()  # neither the system's CAs nor WEBHOOK_CA_FILE know it
    async with receiving(tls=_certificate(stranger, tmp_path, "stranger")) as receiver:
        endpoint = await subscribe(client, receiver, ["stock.changed"])
        assert (await client.put("/inventory/5", json={"quantity": 3})).status_code == 201
        attempts = f"/webhooks/{endpoint['id']}/deliveries"
        # The log is the only outward sign of a failed attempt: polled, with a deadline.
        async with asyncio.timeout(10):
            while len(log := (await client.get(attempts)).json()["items"]) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    # Never reached the receiver's handler: the handshake failed first.
    assert receiver.requests == 0
    assert all(attempt["status_code"] is None for attempt in log)
    assert all("certificate" in attempt["error"].lower() for attempt in log)
    # Retried, not given up.
    assert all(attempt["next_attempt_at"] is not None for attempt in log)
    shown = (await client.get(f"/webhooks/{endpoint['id']}")).json()
    assert shown["enabled"] is True
