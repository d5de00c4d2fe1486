"""Which addresses `fetch_web_content` may reach: a table per reason, and the allowlist."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from kaiwa.net.addresses import AddressPolicy, BlockedAddress, classify


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fc00::1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("100.127.255.254", "a shared (carrier-grade NAT) address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "the unspecified address"),
        ("::", "the unspecified address"),
        ("240.0.0.1", "a private address"),
        ("255.255.255.255", "a private address"),
        ("fec0::1", "a site-local address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::ffff:169.254.169.254", "a link-local address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("2002:7f00:1::", "a loopback address"),  # 6to4 carrying 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "a link-local address"),  # NAT64 carrying 169.254.169.254
    ],
)
def test_non_public_addresses_are_refused_with_their_reason(address: str, reason: str) -> None:
    assert classify(ip_address(address)) == reason


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert classify(ip_address(address)) is None


def test_the_message_names_the_host_and_the_address() -> None:
    policy = AddressPolicy()
    assert policy.refusal("127.0.0.1", ip_address("127.0.0.1")) == "127.0.0.1 is a loopback address"
    assert (
        policy.refusal("metadata.internal", ip_address("169.254.169.254"))
        == "metadata.internal resolves to 169.254.169.254, a link-local address"
    )


def test_an_allowlisted_network_allows_only_its_addresses() -> None:
    policy = AddressPolicy.parse("127.0.0.1, 10.0.0.0/8")
    assert policy.refusal("127.0.0.1", ip_address("127.0.0.1")) is None
    assert policy.refusal("x", ip_address("10.200.0.1")) is None
    assert policy.refusal("x", ip_address("::ffff:127.0.0.1")) is None
    assert policy.refusal("127.0.0.2", ip_address("127.0.0.2")) is not None
    assert policy.refusal("x", ip_address("192.168.0.1")) is not None


def test_an_allowlisted_host_skips_the_address_check() -> None:
    policy = AddressPolicy.parse(" Wiki.Internal. , [::1]")
    assert policy.refusal("wiki.internal", ip_address("10.0.0.5")) is None
    assert policy.refusal("WIKI.internal", ip_address("10.0.0.5")) is None
    assert policy.refusal("::1", ip_address("::1")) is None
    assert policy.refusal("other.internal", ip_address("10.0.0.5")) is not None


def test_every_address_of_a_name_must_pass() -> None:
    policy = AddressPolicy()
    with pytest.raises(BlockedAddress) as caught:
        policy.check("mixed.example", [ip_address("93.184.216.34"), ip_address("10.0.0.1")])
    assert caught.value.address == ip_address("10.0.0.1")
    assert caught.value.host == "mixed.example"
    policy.check("public.example", [ip_address("93.184.216.34"), ip_address("1.1.1.1")])


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "300.1.1.1", "fe80::zz"])
def test_a_malformed_allowlist_entry_is_a_value_error(entry: str) -> None:
    with pytest.raises(ValueError, match="neither an address nor a CIDR"):
        AddressPolicy.parse(f"localhost, {entry}")


def test_an_empty_allowlist_allows_nothing_private() -> None:
    assert AddressPolicy.parse(" , ,") == AddressPolicy()
