"""`GuardedTransport` resolves once, checks every address, and connects to a checked one."""

from __future__ import annotations

from ipaddress import ip_address

import httpx
import pytest
from tests.fakes.web_server import FakeWeb

from kaiwa.net.addresses import AddressPolicy, BlockedAddress, IPAddress
from kaiwa.net.transport import GuardedTransport


class Rebinding:
    """A resolver that answers `first` once and `later` afterwards, counting the lookups."""

    def __init__(self, first: str, later: str) -> None:
        self.first, self.later = ip_address(first), ip_address(later)
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        return [self.first if len(self.lookups) == 1 else self.later]


async def test_connects_to_the_address_it_checked_and_keeps_the_host_name(
    fake_web: FakeWeb,
) -> None:
    resolver = Rebinding("127.0.0.1", "10.9.9.9")
    transport = GuardedTransport(AddressPolicy.parse("127.0.0.1"), resolver=resolver)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"http://site.test:{fake_web.port}/echo/host")
    assert response.text == f"site.test:{fake_web.port}"
    assert resolver.lookups == ["site.test"]  # one lookup: no second answer to rebind to


async def test_a_name_with_one_private_address_among_public_ones_is_refused(
    fake_web: FakeWeb,
) -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        return [ip_address("93.184.216.34"), ip_address("127.0.0.1")]

    transport = GuardedTransport(AddressPolicy(), resolver=resolver)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(BlockedAddress, match=r"site\.test resolves to 127\.0\.0\.1"):
            await client.get(f"http://site.test:{fake_web.port}/echo/host")
    assert fake_web.requests == []


async def test_an_unresolvable_name_is_a_connect_error() -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        raise OSError("Name or service not known")

    transport = GuardedTransport(AddressPolicy(), resolver=resolver)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError, match=r"cannot resolve nowhere\.test"):
            await client.get("http://nowhere.test/")


async def test_a_refused_connection_is_an_httpx_connect_error() -> None:
    transport = GuardedTransport(AddressPolicy.parse("127.0.0.1"))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:1/")
