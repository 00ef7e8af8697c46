"""Webhook requests: signed and sent, only ever to an address the SSRF guard let through."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks.webhooks import Webhook

from app.clients.webhook_targets import (
    AddressRefused,
    InvalidTarget,
    Resolver,
    checked_address,
    is_address,
    parse_target,
    resolve,
)
from app.core.config import Settings

# Read of a receiver's answer: enough to reuse the connection, never a hostile flood.
_MAX_ANSWER_BYTES = 64 * 1024


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
        address = await checked_address(host, port, self._allowed, self._resolver)
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
        # Compared with a URL's host in its ASCII form.
        self._allowed = frozenset(_ascii(host) for host in allowed_hosts)
        self._resolver = resolver
        self._tls = ssl.create_default_context()
        if ca_file is not None:
            self._tls.load_verify_locations(cafile=ca_file)
        self._signers: dict[str, Webhook] = {}
        self._session: aiohttp.ClientSession | None = None
        # Endpoint URLs, parsed once: few endpoints, many deliveries.
        self._targets: dict[str, yarl.URL | InvalidTarget] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSender:
        return cls(
            timeout_seconds=settings.webhook_timeout_seconds,
            allowed_hosts=settings.webhook_allowed_hosts,
            ca_file=settings.webhook_ca_file,
        )

    async def check(self, url: yarl.URL) -> str:
        """The address `url` (a `parse_target` result) would be sent to now; `AddressRefused`
        when it may not be."""
        return await checked_address(
            url.raw_host or "", url.port or 0, self._allowed, self._resolver
        )

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
            target = self._targets[url] = _target(url)
        if isinstance(target, InvalidTarget):
            return outcome(None, f"not a webhook URL: {target}"[:200], refused=True)
        if is_address(target.raw_host or ""):
            # aiohttp never looks an address up: checked here. A name is checked by the
            # connector's resolver, on the very addresses it connects to.
            try:
                await self.check(target)
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


def _ascii(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host.lower()


def _target(url: str) -> yarl.URL | InvalidTarget:
    # A URL stored before its checks were what they are now may not be a target any more.
    try:
        return parse_target(url)
    except InvalidTarget as invalid:
        return invalid
