"""Webhook requests: where they may go (the SSRF guard) and how they are signed and sent."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks.webhooks import Webhook

from app.core.config import Settings

# Every address of a host, resolved now: (host, port) -> addresses.
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Read of a receiver's answer: enough to reuse the connection, never a hostile flood.
_MAX_ANSWER_BYTES = 64 * 1024


class AddressRefused(OSError):
    """The target is a loopback, private, link-local or metadata address that is not allowed."""


async def resolve(host: str, port: int) -> list[str]:
    try:
        # An address needs no look-up (and no trip through the resolver's thread pool).
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
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


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


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


class _GuardedResolver(AbstractResolver):
    """aiohttp's look-ups for webhook hosts, through the SSRF guard: the connector only ever
    connects to addresses this returns, so a name cannot lead to a refused address."""

    def __init__(self, allowed_hosts: Collection[str], resolver: Resolver) -> None:
        self._allowed = allowed_hosts
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = await checked_address(
            httpx.URL(scheme="http", host=host, port=port or None), self._allowed, self._resolver
        )
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


class WebhookSender:
    """Sends one event to one endpoint, signed per Standard Webhooks, to a checked address,
    through one aiohttp session per process (connections kept alive between deliveries).
    Redirects are never followed (a 3xx is just not a 2xx)."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        allowed_hosts: Collection[str],
        resolver: Resolver = resolve,
        ca_file: Path | None = None,
    ) -> None:
        self._timeout = timeout_seconds
        self._allowed = frozenset(allowed_hosts)
        self._resolver = resolver
        self._tls = ssl.create_default_context()
        if ca_file is not None:
            self._tls.load_verify_locations(cafile=ca_file)
        self._signers: dict[str, Webhook] = {}
        self._session: aiohttp.ClientSession | None = None
        # Endpoint URLs, parsed once: few endpoints, many deliveries.
        self._targets: dict[str, yarl.URL] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSender:
        return cls(
            timeout_seconds=settings.webhook_timeout_seconds,
            allowed_hosts=settings.webhook_allowed_hosts,
            ca_file=settings.webhook_ca_file,
        )

    async def check(self, url: httpx.URL) -> str:
        """The address `url` would be sent to now; `AddressRefused` when it may not be."""
        return await checked_address(url, self._allowed, self._resolver)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                # Every new connection's look-up goes through the guard again, none is
                # answered from a cache; the dispatcher bounds requests per endpoint itself.
                resolver=_GuardedResolver(self._allowed, self._resolver),
                use_dns_cache=False,
                ssl=self._tls,
                limit=0,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                auto_decompress=False,
                skip_auto_headers=("Accept", "Accept-Encoding"),
            )
        return self._session

    async def send(self, *, url: str, secret: str, event_id: str, payload: str) -> Outcome:
        started = time.perf_counter()

        def outcome(status: int | None, error: str | None, *, refused: bool = False) -> Outcome:
            return Outcome(status, error, (time.perf_counter() - started) * 1000, refused)

        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = yarl.URL(url)
        if target.host is not None and _is_address(target.host):
            # aiohttp never looks an address up: checked here. A name is checked by the
            # connector's resolver, on the very addresses it connects to.
            try:
                await self.check(httpx.URL(url))
            except AddressRefused as refused:
                return outcome(None, str(refused)[:200], refused=True)
        timestamp = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "inventory-webhooks",
            "webhook-id": event_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": self._signer(secret).sign(event_id, timestamp, payload),
        }
        try:
            async with self._client().post(
                target, data=payload.encode(), headers=headers, allow_redirects=False
            ) as response:
                await response.content.read(_MAX_ANSWER_BYTES)
                return outcome(response.status, None)
        except aiohttp.ClientConnectorError as error:
            if isinstance(error.os_error, AddressRefused):
                return outcome(None, str(error.os_error)[:200], refused=True)
            return outcome(None, f"{type(error).__name__}: {error}"[:200])
        except TimeoutError:
            return outcome(None, f"no answer within {self._timeout:g} s")
        except (aiohttp.ClientError, OSError) as error:
            return outcome(None, f"{type(error).__name__}: {error}"[:200])

    def _signer(self, secret: str) -> Webhook:
        signer = self._signers.get(secret)
        if signer is None:
            signer = self._signers[secret] = Webhook(secret)
        return signer

    async def close(self) -> None:
        """Close the session and its kept-alive connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None
