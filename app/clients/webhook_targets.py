"""Where webhooks may go: which URLs are webhook targets, and which addresses they may reach
(the SSRF guard), checked at registration and again on the address actually connected to."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Collection

import yarl

# Every address of a host, resolved now: (host, port) -> addresses.
Resolver = Callable[[str, int], Awaitable[list[str]]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# A DNS label as resolvers take it: letters, digits, hyphens inside; underscores too, which
# container and service names carry. At most 63 characters.
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_MAX_NAME_LENGTH = 253

# Special-purpose addresses (the IANA IPv4 and IPv6 registries) that are not globally
# reachable, spelled out: `ipaddress.is_global` misses some of them depending on the Python
# release (site-local, 192.0.0.0/24 where a cloud serves metadata, the local-use NAT64 prefix).
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "64:ff9b:1::/48",
        "100::/64",
        "100:0:0:1::/64",
        "2001::/32",
        "2001:db8::/32",
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)

# IPv6 forms that carry an IPv4 address, and where it sits (bits from the right): such an
# address is as reachable as the IPv4 address it carries.
_CARRIERS = (
    (ipaddress.IPv6Network("::ffff:0:0/96"), 0),  # IPv4-mapped
    (ipaddress.IPv6Network("::ffff:0:0:0/96"), 0),  # IPv4-translated
    (ipaddress.IPv6Network("::/96"), 0),  # IPv4-compatible (and :: and ::1)
    (ipaddress.IPv6Network("64:ff9b::/96"), 0),  # NAT64
    (ipaddress.IPv6Network("2002::/16"), 80),  # 6to4
)


class InvalidTarget(ValueError):
    """Not a URL webhooks can be sent to: not http(s), no valid host name or address, or a
    port outside 1–65535."""


class AddressRefused(OSError):
    """The target is an address that is not globally reachable, and its host is not allowed."""


def parse_target(text: str) -> yarl.URL:
    """`text` as a webhook URL; `InvalidTarget` saying why it is not one."""
    try:
        url = yarl.URL(text)
        port = url.explicit_port
    except ValueError as error:  # IDNA errors (UnicodeError) and ports past 65535 among them
        raise InvalidTarget(f"not a URL ({error})") from None
    if url.scheme not in ("http", "https") or not url.raw_host:
        raise InvalidTarget("not an http:// or https:// URL with a host")
    if port is not None and not 1 <= port <= 65535:
        raise InvalidTarget(f"port {port} is outside 1–65535")
    if not (is_address(url.raw_host) or is_host_name(url.raw_host)):
        raise InvalidTarget(f"{url.raw_host[:100]!r} is neither a valid host name nor an address")
    return url


def is_host_name(host: str) -> bool:
    """Whether `host` (in its ASCII form) is a DNS name a resolver takes, read the way the
    standard library hands it to one (its IDNA codec)."""
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > _MAX_NAME_LENGTH:
        return False
    labels = name.lower().split(".")
    # A name ending in a number is an IPv4 address in some spelling (`2130706433`, `0x7f.1`).
    if labels[-1].isdigit() or labels[-1].startswith("0x"):
        return False
    if not all(_LABEL.match(label) for label in labels):
        return False
    try:
        # Both ways: an `xn--` label must also be the encoding of something.
        name.encode("idna").decode("idna")
    except UnicodeError:
        return False
    return True


def is_address(host: str) -> bool:
    """Whether `host` is an IP address (IPv6 without brackets, a zone allowed)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_public(address: Address) -> bool:
    """Whether `address` is globally reachable: not loopback, private, link-local, CGNAT,
    metadata, multicast, reserved or documentation, nor an IPv6 form of such an IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        for network, shift in _CARRIERS:
            if address in network:
                return is_public(ipaddress.IPv4Address((int(address) >> shift) & 0xFFFFFFFF))
    return address.is_global and not any(address in network for network in _NOT_GLOBAL)


async def resolve(host: str, port: int) -> list[str]:
    try:
        # An address needs no look-up (and no trip through the resolver's thread pool).
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as error:  # the name has no IDNA form: nothing to look up
        raise AddressRefused(f"{host[:100]} cannot be resolved: {error}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_address(
    host: str, port: int, allowed_hosts: Collection[str], resolver: Resolver = resolve
) -> str:
    """The address to connect to for `host` (in its ASCII form): every address it resolves
    to must be public, or the host itself (as written in the URL) listed in `allowed_hosts`;
    else `AddressRefused`. Checking every address keeps a name from offering a good one and a
    bad one; a name that resolves to a listed address is not listed itself."""
    host = host.lower()
    if not (is_address(host) or is_host_name(host)):
        raise AddressRefused(f"{host[:100]!r} is not a valid host name")
    try:
        addresses = await resolver(host, port)
    except OSError as error:
        raise AddressRefused(f"{host} cannot be resolved: {error}") from None
    if not addresses:
        raise AddressRefused(f"{host} resolves to no address")
    if host not in allowed_hosts:
        for address in addresses:
            if not is_public(ipaddress.ip_address(address)):
                raise AddressRefused(
                    f"{host} resolves to {address}, an address that is not globally reachable"
                    " (see WEBHOOK_ALLOWED_HOSTS)"
                )
    return addresses[0]
