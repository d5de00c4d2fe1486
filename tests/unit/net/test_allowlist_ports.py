"""`KAIWA_FETCH_ALLOW_PRIVATE` entries with a port allow that port alone; without, every port."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address
from urllib.parse import quote

import pytest
from tests.fakes.web_server import FakeWeb

from kaiwa.net.addresses import AddressPolicy, BlockedAddress
from kaiwa.net.fetch import Fetcher, FetchError

LOOPBACK = ip_address("127.0.0.1")
LOOPBACK6 = ip_address("::1")


@pytest.mark.parametrize(
    ("entry", "hosts", "networks"),
    [
        ("wiki.internal", {("wiki.internal", None)}, []),
        ("Wiki.Internal.:8080", {("wiki.internal", 8080)}, []),
        ("127.0.0.1", set(), [(IPv4Network("127.0.0.1/32"), None)]),
        ("127.0.0.1:8080", set(), [(IPv4Network("127.0.0.1/32"), 8080)]),
        ("10.0.0.0/8:443", set(), [(IPv4Network("10.0.0.0/8"), 443)]),
        ("::1", set(), [(IPv6Network("::1/128"), None)]),
        ("[::1]", set(), [(IPv6Network("::1/128"), None)]),
        ("[::1]:8080", set(), [(IPv6Network("::1/128"), 8080)]),
        ("[fd00::/8]:443", set(), [(IPv6Network("fd00::/8"), 443)]),
        ("fd00::/8", set(), [(IPv6Network("fd00::/8"), None)]),
    ],
)
def test_entries_parse_with_and_without_a_port(
    entry: str, hosts: set[tuple[str, int | None]], networks: list[tuple[object, int | None]]
) -> None:
    policy = AddressPolicy.parse(entry)
    assert policy.hosts == frozenset(hosts)
    assert list(policy.networks) == networks


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("localhost:0", "no valid port"),
        ("localhost:65536", "no valid port"),
        ("localhost:http", "no valid port"),
        ("127.0.0.1:", "no valid port"),
        ("[::1]:", "no valid port"),
        ("[::1]8080", r"not `\[address\]` or `\[address\]:port`"),
        ("[::1", r"not `\[address\]` or `\[address\]:port`"),
        ("300.1.1.1:80", "neither an address nor a CIDR"),
        ("[fe80::zz]:80", "neither an address nor a CIDR"),
    ],
)
def test_a_malformed_port_is_a_value_error(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AddressPolicy.parse(f"localhost, {entry}")


def test_an_address_with_a_port_is_allowed_on_that_port_only() -> None:
    policy = AddressPolicy.parse("127.0.0.1:8080, [::1]:9090")
    assert policy.refusal("127.0.0.1", LOOPBACK, 8080) is None
    assert policy.refusal("localhost", LOOPBACK, 8080) is None
    assert policy.refusal("::1", LOOPBACK6, 9090) is None
    assert policy.refusal("x", ip_address("::ffff:127.0.0.1"), 8080) is None
    assert (
        policy.refusal("127.0.0.1", LOOPBACK, 8000)
        == "127.0.0.1 is a loopback address (allowed on port 8080 only)"
    )
    assert (
        policy.refusal("::1", LOOPBACK6, 8080)
        == "::1 is a loopback address (allowed on port 9090 only)"
    )
    # A port not known is not one that was listed.
    assert policy.refusal("127.0.0.1", LOOPBACK) is not None


def test_a_host_name_with_a_port_skips_the_address_check_on_that_port_only() -> None:
    policy = AddressPolicy.parse("wiki.internal:8443, wiki.internal:8444")
    private = ip_address("10.0.0.5")
    assert policy.refusal("WIKI.internal", private, 8443) is None
    assert policy.refusal("wiki.internal", private, 8444) is None
    assert (
        policy.refusal("wiki.internal", private, 443)
        == "wiki.internal resolves to 10.0.0.5, a private address (allowed on port 8443, 8444 only)"
    )


def test_an_entry_without_a_port_still_allows_every_port() -> None:
    policy = AddressPolicy.parse("127.0.0.1, 127.0.0.1:8080, wiki.internal")
    for port in (None, 80, 8000, 8080):
        assert policy.refusal("127.0.0.1", LOOPBACK, port) is None
        assert policy.refusal("wiki.internal", ip_address("10.0.0.5"), port) is None


def test_check_passes_the_port_to_every_address() -> None:
    policy = AddressPolicy.parse("127.0.0.1:8080, [::1]:8080")
    policy.check("localhost", [LOOPBACK, LOOPBACK6], 8080)
    with pytest.raises(BlockedAddress) as caught:
        policy.check("localhost", [LOOPBACK, LOOPBACK6], 8000)
    assert caught.value.address == LOOPBACK


def test_lists_names_a_host_or_a_literal_address_for_a_port() -> None:
    policy = AddressPolicy.parse("hooks.internal:8080, 127.0.0.1:9000, 10.0.0.0/8")
    assert policy.lists("hooks.internal", 8080)
    assert not policy.lists("hooks.internal", 80)
    assert policy.lists("127.0.0.1", 9000)
    assert not policy.lists("127.0.0.1", 9001)
    assert policy.lists("10.1.2.3", 80)
    assert not policy.lists("example.com", 80)


async def test_a_fetch_reaches_the_allowed_port_and_is_refused_on_another(
    fake_web: FakeWeb,
) -> None:
    with FakeWeb() as other:
        fetcher = Fetcher(allow_private=f"127.0.0.1:{fake_web.port}", timeout=5.0)
        try:
            page = await fetcher.fetch(fake_web.url("/plain"))
            assert page.text == "Plain text, nothing to extract."

            with pytest.raises(FetchError) as caught:
                await fetcher.fetch(other.url("/plain"))
            assert "127.0.0.1 is a loopback address" in caught.value.message
            assert f"allowed on port {fake_web.port} only" in caught.value.message
            assert other.requests == []

            # A redirect from the allowed port to another one is refused at that hop.
            hop = fake_web.url(f"/redirect?to={quote(other.url('/plain'), safe='')}")
            with pytest.raises(FetchError, match="loopback"):
                await fetcher.fetch(hop)
            assert other.requests == []
        finally:
            await fetcher.aclose()
