"""Webhook requests: where they may go (the SSRF guard) and how they are signed and sent."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks.webhooks import Webhook

from app.core.config import Settings

# Every address of a host, resolved now: (host, port) -> addresses.
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Read of a receiver's answer: enough to reuse the connection, never a hostile flood.
_MAX_ANSWER_BYTES = 64 * 1024


class AddressRefused(Exception):
    """The target is a loopback, private, link-local or metadata address that is not allowed."""


async def resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # `is_global` is False for loopback, private, link-local (cloud metadata lives at
    # 169.254.169.254), shared (100.64/10), reserved and unspecified addresses.
    return ip.is_global and not ip.is_multicast


def default_port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


async def checked_address(
    url: httpx.URL, allowed_hosts: Collection[str], resolver: Resolver = resolve
) -> str:
    """The address to connect to for `url`: every address its host resolves to must be
    public, or the host itself (as written in the URL) listed in `allowed_hosts`; else
    `AddressRefused`. Checking every address keeps a name from offering a good one and a bad
    one; a name that resolves to a listed address is not listed itself."""
    host = url.host.lower()
    try:
        addresses = await resolver(host, default_port(url))
    except OSError as error:
        raise AddressRefused(f"{host} cannot be resolved: {error}") from None
    if not addresses:
        raise AddressRefused(f"{host} resolves to no address")
    for address in addresses:
        if not _is_public(address) and host not in allowed_hosts:
            raise AddressRefused(
                f"{host} resolves to {address}, a loopback, private, link-local or metadata "
                "address (see WEBHOOK_ALLOWED_HOSTS)"
            )
    return addresses[0]


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: float
    refused: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    """One client for every webhook request of the process: timeouts, no redirects followed,
    no proxies or credentials from the environment."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.webhook_timeout_seconds),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
    )


class WebhookSender:
    """Sends one event to one endpoint, signed per Standard Webhooks, to a checked address."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        timeout_seconds: float,
        allowed_hosts: Collection[str],
        resolver: Resolver = resolve,
    ) -> None:
        self._client = client
        self._timeout = timeout_seconds
        self._allowed = frozenset(allowed_hosts)
        self._resolver = resolver

    async def check(self, url: httpx.URL) -> str:
        """The address `url` would be sent to now; `AddressRefused` when it may not be."""
        return await checked_address(url, self._allowed, self._resolver)

    async def send(self, *, url: str, secret: str, event_id: str, payload: str) -> Outcome:
        started = time.perf_counter()

        def outcome(status: int | None, error: str | None, *, refused: bool = False) -> Outcome:
            return Outcome(status, error, (time.perf_counter() - started) * 1000, refused)

        target = httpx.URL(url)
        try:
            address = await self.check(target)
        except AddressRefused as refused:
            return outcome(None, str(refused)[:200], refused=True)
        timestamp = datetime.now(UTC)
        headers = {
            "Host": target.netloc.decode("ascii"),
            "Content-Type": "application/json",
            "User-Agent": "inventory-webhooks",
            "webhook-id": event_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": Webhook(secret).sign(event_id, timestamp, payload),
        }
        # The connection goes to the address just checked, not to whatever the name resolves
        # to a moment later; TLS still checks the certificate against the name.
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            async with asyncio.timeout(self._timeout):
                request = self._client.build_request(
                    "POST",
                    target.copy_with(host=address),
                    content=payload.encode(),
                    headers=headers,
                    extensions=extensions,
                )
                response = await self._client.send(request, stream=True)
                try:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read > _MAX_ANSWER_BYTES:
                            break
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return outcome(None, f"no answer within {self._timeout:g} s")
        except httpx.HTTPError as error:
            return outcome(None, f"{type(error).__name__}: {error}"[:200])
        return outcome(response.status_code, None)
