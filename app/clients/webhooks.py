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

import h11
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


class _Connection:
    """One HTTP/1.1 connection to one address, kept alive between requests."""

    __slots__ = ("http", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.http = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        self.writer.close()


class WebhookSender:
    """Sends one event to one endpoint, signed per Standard Webhooks, to a checked address.

    Requests go over connections of its own, kept alive per address, framed by h11: httpx's
    pool checked every idle connection's socket on every request, which made deliveries cost
    a purchase a third of its throughput (docs/performance.md). Redirects are never followed
    (a 3xx is just not a 2xx).
    """

    def __init__(
        self,
        *,
        timeout_seconds: float,
        allowed_hosts: Collection[str],
        resolver: Resolver = resolve,
    ) -> None:
        self._timeout = timeout_seconds
        self._allowed = frozenset(allowed_hosts)
        self._resolver = resolver
        self._idle: dict[tuple[str, str, int, str], list[_Connection]] = {}
        self._tls = ssl.create_default_context()
        self._signers: dict[str, Webhook] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSender:
        return cls(
            timeout_seconds=settings.webhook_timeout_seconds,
            allowed_hosts=settings.webhook_allowed_hosts,
        )

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
        body = payload.encode()
        request = h11.Request(
            method="POST",
            target=target.raw_path.decode("ascii"),
            headers=[
                ("Host", target.netloc.decode("ascii")),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("User-Agent", "inventory-webhooks"),
                ("webhook-id", event_id),
                ("webhook-timestamp", str(int(timestamp.timestamp()))),
                ("webhook-signature", self._signer(secret).sign(event_id, timestamp, payload)),
            ],
        )
        key = (target.scheme, address, default_port(target), target.host)
        try:
            async with asyncio.timeout(self._timeout):
                status = await self._exchange(key, request, body)
        except TimeoutError:
            return outcome(None, f"no answer within {self._timeout:g} s")
        except (OSError, h11.ProtocolError, asyncio.IncompleteReadError) as error:
            return outcome(None, f"{type(error).__name__}: {error}"[:200])
        return outcome(status, None)

    def _signer(self, secret: str) -> Webhook:
        signer = self._signers.get(secret)
        if signer is None:
            signer = self._signers[secret] = Webhook(secret)
        return signer

    async def _exchange(
        self, key: tuple[str, str, int, str], request: h11.Request, body: bytes
    ) -> int:
        idle = self._idle.setdefault(key, [])
        while idle:
            connection = idle.pop()
            try:
                return await self._request(key, connection, request, body)
            except (OSError, h11.ProtocolError, asyncio.IncompleteReadError):
                # A kept-alive connection the receiver closed meanwhile: try the next one.
                continue
        return await self._request(key, await self._connect(key), request, body)

    async def _connect(self, key: tuple[str, str, int, str]) -> _Connection:
        scheme, address, port, host = key
        # The connection goes to the address just checked, not to whatever the name resolves
        # to a moment later; TLS still checks the certificate against the name.
        tls = {"ssl": self._tls, "server_hostname": host} if scheme == "https" else {}
        reader, writer = await asyncio.open_connection(address, port, **tls)  # type: ignore[arg-type]
        return _Connection(reader, writer)

    async def _request(
        self,
        key: tuple[str, str, int, str],
        connection: _Connection,
        request: h11.Request,
        body: bytes,
    ) -> int:
        http = connection.http
        try:
            connection.writer.write(
                http.send(request) + http.send(h11.Data(data=body)) + http.send(h11.EndOfMessage())
            )
            await connection.writer.drain()
            status = 0
            read = 0
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    http.receive_data(await connection.reader.read(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    read += len(event.data)
                    if read > _MAX_ANSWER_BYTES:
                        break
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
        except BaseException:
            connection.close()
            raise
        if http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()
            self._idle.setdefault(key, []).append(connection)
        else:
            connection.close()
        if not status:
            raise h11.RemoteProtocolError("the connection closed before an answer")
        return status

    def close(self) -> None:
        """Close every kept-alive connection."""
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
