"""Webhook URLs and addresses the contract refuses, and some it takes, as test tables."""

from __future__ import annotations

# Hosts that are no valid name (the fuzzer and a hostile pass found each) and ports outside
# 1-65535.
INVALID_URLS = [
    "http://xn--a.com/",
    "http://xn--localhost-/",
    "http://a..com/",
    "http://" + "a" * 64 + ".com/",
    "http://" + "a" * 1000 + "/",
    "http://" + "a." * 150 + "com/",
    "http://a.com:0/",
    "http://a.com:65536/",
    "http://a.com:99999999999999999999/",
    "http://-a.com/",
    "http://%61.com/",
    "http://2130706433/",
    "ftp://a.com/",
    "http:///x",
]

# One address per range the contract refuses, with the IPv6 forms that carry an IPv4.
NOT_GLOBAL = {
    "loopback": "127.0.0.2",
    "loopback, high": "127.255.0.1",
    "this network": "0.0.0.0",
    "private 10/8": "10.1.2.3",
    "private 172.16/12": "172.16.0.1",
    "private 192.168/16": "192.168.0.1",
    "link-local": "169.254.1.1",
    "metadata": "169.254.169.254",
    "metadata in 192.0.0.0/24": "192.0.0.192",
    "CGNAT": "100.64.0.1",
    "metadata in CGNAT": "100.100.100.200",
    "documentation": "192.0.2.1",
    "benchmarking": "198.18.0.1",
    "6to4 relay anycast": "192.88.99.1",
    "multicast": "224.0.0.1",
    "reserved": "240.0.0.1",
    "broadcast": "255.255.255.255",
    "IPv6 loopback": "::1",
    "IPv6 unspecified": "::",
    "unique local": "fd00::1",
    "metadata, IPv6": "fd00:ec2::254",
    "IPv6 link-local": "fe80::1",
    "site-local": "fec0::1",
    "IPv6 multicast": "ff02::1",
    "IPv6 documentation": "2001:db8::1",
    "IPv6 documentation, 3fff::/20": "3fff::1",
    "discard-only": "100::1",
    "Teredo": "2001::1",
    "SRv6 SIDs": "5f00::1",
    "IPv4-mapped loopback": "::ffff:127.0.0.1",
    "IPv4-mapped private": "::ffff:10.0.0.1",
    "IPv4-translated loopback": "::ffff:0:7f00:1",
    "IPv4-compatible loopback": "::127.0.0.1",
    "IPv4-compatible private": "::10.0.0.1",
    "NAT64 loopback": "64:ff9b::7f00:1",
    "NAT64 metadata": "64:ff9b::a9fe:a9fe",
    "NAT64 private": "64:ff9b::a00:1",
    "local-use NAT64": "64:ff9b:1::7f00:1",
    "local-use NAT64, public IPv4": "64:ff9b:1::5db8:d70e",
    "6to4 loopback": "2002:7f00:1::",
    "6to4 private": "2002:a00:1::1",
    "6to4 metadata": "2002:a9fe:a9fe::1",
}

GLOBAL = {
    "IPv4": "93.184.215.14",
    "IPv6": "2606:4700:4700::1111",
    "NAT64 of a public IPv4": "64:ff9b::5db8:d70e",
    "6to4 of a public IPv4": "2002:5db8:d70e::1",
    "IPv4-mapped public": "::ffff:93.184.215.14",
}


def url_of(address: str) -> str:
    """`address` as the host of a URL."""
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:8080/hook"
