"""Where webhooks may go: URLs that are no target, and addresses that are not globally
reachable, refused at registration (`parse_target`, `checked_address`) and at connect time
(the sender's resolver), never with an error other than the guard's own."""

from __future__ import annotations

import ipaddress

import pytest

from app.clients.webhook_targets import (
    AddressRefused,
    InvalidTarget,
    checked_address,
    is_public,
    parse_target,
    resolve,
)
from app.clients.webhooks import WebhookSender
from tests.support.addresses import GLOBAL, INVALID_URLS, NOT_GLOBAL, url_of


@pytest.mark.parametrize("url", INVALID_URLS)
def test_a_url_without_a_valid_host_or_port_is_no_target(url: str) -> None:
    with pytest.raises(InvalidTarget):
        parse_target(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example/x",
        "HTTPS://Hooks.Example:8443/x?y=1",
        "http://bücher.example/",
        "http://hooks.example.:1/",
        "http://receiver_1:65535/",
        "http://[2606:4700:4700::1111]/",
        "http://93.184.215.14/",
    ],
)
def test_a_valid_url_is_a_target(url: str) -> None:
    parse_target(url)


@pytest.mark.parametrize("address", list(NOT_GLOBAL.values()), ids=list(NOT_GLOBAL))
def test_an_address_that_is_not_globally_reachable_is_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", list(GLOBAL.values()), ids=list(GLOBAL))
def test_a_globally_reachable_address_is_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", list(NOT_GLOBAL.values()), ids=list(NOT_GLOBAL))
async def test_the_refused_ranges_are_refused_at_registration_unless_listed(address: str) -> None:
    target = parse_target(url_of(address))
    host = target.raw_host or ""
    with pytest.raises(AddressRefused):
        await checked_address(host, 8080, ())
    assert await checked_address(host, 8080, (host,)) == str(ipaddress.ip_address(host))


@pytest.mark.parametrize("address", list(NOT_GLOBAL.values()), ids=list(NOT_GLOBAL))
async def test_the_refused_ranges_are_refused_at_connect_time(address: str) -> None:
    """A name that resolves to a refused address is never connected to; nor is an address
    written in a URL stored before the rules were what they are."""

    async def resolver(_host: str, _port: int) -> list[str]:
        return [address]

    sender = WebhookSender(timeout_seconds=1, allowed_hosts=(), resolver=resolver)
    try:
        for url in ("http://hooks.example:8080/hook", url_of(address)):
            outcome = await sender.send(url=url, secret="whsec_AAAA", event_id="e", payload="{}")
            assert outcome.refused, outcome
            assert outcome.status_code is None
    finally:
        await sender.close()


@pytest.mark.parametrize(
    "host", ["a..com", "xn--a.com", "a" * 64 + ".com", "a" * 1000, "xn--localhost-", "a_.-b"]
)
async def test_the_guard_refuses_an_invalid_name_without_looking_it_up(host: str) -> None:
    async def never(_host: str, _port: int) -> list[str]:
        raise AssertionError("looked up")

    with pytest.raises(AddressRefused, match="not a valid host name"):
        await checked_address(host, 80, (), never)


@pytest.mark.parametrize("host", ["a..com", "a" * 64 + ".com", "a" * 1000])
async def test_the_resolver_refuses_a_name_without_an_idna_form(host: str) -> None:
    with pytest.raises(AddressRefused, match="cannot be resolved"):
        await resolve(host, 80)


@pytest.mark.parametrize("url", INVALID_URLS)
async def test_a_stored_url_that_is_no_target_is_a_refused_attempt(url: str) -> None:
    async def nowhere(host: str, _port: int) -> list[str]:
        raise OSError(f"{host} is not looked up here")

    sender = WebhookSender(timeout_seconds=1, allowed_hosts=(), resolver=nowhere)
    try:
        outcome = await sender.send(url=url, secret="whsec_AAAA", event_id="e", payload="{}")
    finally:
        await sender.close()
    assert outcome.refused
    assert outcome.error


async def test_a_listed_host_may_be_written_in_unicode() -> None:
    async def loopback(_host: str, _port: int) -> list[str]:
        return ["127.0.0.1"]

    sender = WebhookSender(timeout_seconds=1, allowed_hosts=("bücher.example",), resolver=loopback)
    assert await sender.check(parse_target("http://Bücher.example/hook")) == "127.0.0.1"
