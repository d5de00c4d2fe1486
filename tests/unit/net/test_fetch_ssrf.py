"""`Fetcher` refuses loopback, private and link-local addresses, at every hop, before connecting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest
from tests.fakes.web_server import FakeWeb

from kaiwa.net.fetch import Fetcher, FetchError


@pytest.fixture
async def strict() -> AsyncIterator[Fetcher]:
    """A fetcher with no allowlist: only public addresses."""
    fetcher = Fetcher(timeout=5.0)
    yield fetcher
    await fetcher.aclose()


async def test_loopback_is_refused_without_connecting(strict: Fetcher, fake_web: FakeWeb) -> None:
    with pytest.raises(FetchError) as caught:
        await strict.fetch(fake_web.url("/article"))
    assert "127.0.0.1 is a loopback address" in caught.value.message
    assert "KAIWA_FETCH_ALLOW_PRIVATE" in caught.value.message
    assert fake_web.requests == []


async def test_a_name_that_resolves_to_loopback_is_refused(
    strict: Fetcher, fake_web: FakeWeb
) -> None:
    with pytest.raises(FetchError, match=r"localhost resolves to (127\.0\.0\.1|::1), a loopback"):
        await strict.fetch(f"http://localhost:{fake_web.port}/article")
    assert fake_web.requests == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1]:1/", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]:1/", "::ffff:127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://100.64.0.1/", "100.64.0.1 is a shared (carrier-grade NAT) address"),
        ("http://0.0.0.0:1/", "0.0.0.0 is the unspecified address"),
        ("https://192.168.0.1/", "192.168.0.1 is a private address"),
    ],
)
async def test_non_public_addresses_are_refused(strict: Fetcher, url: str, reason: str) -> None:
    with pytest.raises(FetchError) as caught:
        await strict.fetch(url)
    assert reason in caught.value.message


async def test_an_allowlisted_address_is_reached(fetcher: Fetcher, fake_web: FakeWeb) -> None:
    page = await fetcher.fetch(fake_web.url("/plain"))
    assert page.text == "Plain text, nothing to extract."


async def test_a_redirect_to_a_private_address_is_refused(
    fetcher: Fetcher, fake_web: FakeWeb
) -> None:
    target = quote("http://169.254.169.254/latest/meta-data/", safe="")
    with pytest.raises(FetchError, match=r"169\.254\.169\.254 is a link-local address"):
        await fetcher.fetch(fake_web.url(f"/redirect?to={target}"))


async def test_a_public_page_redirecting_to_loopback_is_refused_at_that_hop(
    fetcher: Fetcher, fake_web: FakeWeb
) -> None:
    # 127.0.0.1 is allowed, ::1 is not: the hops before the last one are served, the last refused.
    then = quote(f"http://[::1]:{fake_web.port}/article", safe="")
    with pytest.raises(FetchError, match=r"::1 is a loopback address"):
        await fetcher.fetch(fake_web.url(f"/chain/3?then={then}"))
    assert [path.split("?")[0] for path in fake_web.paths] == [
        "/chain/3",
        "/chain/2",
        "/chain/1",
        "/chain/0",
    ]


async def test_an_allowed_redirect_chain_is_followed(fetcher: Fetcher, fake_web: FakeWeb) -> None:
    then = quote(fake_web.url("/plain"), safe="")
    page = await fetcher.fetch(fake_web.url(f"/chain/4?then={then}"))
    assert page.url == fake_web.url("/plain")
    assert page.text == "Plain text, nothing to extract."


async def test_more_than_five_redirects_are_refused(fetcher: Fetcher, fake_web: FakeWeb) -> None:
    with pytest.raises(FetchError, match=r"too many redirects \(more than 5\)"):
        await fetcher.fetch(fake_web.url("/loop"))
    assert len(fake_web.requests) == 6


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://example.com/", "/relative"]
)
async def test_only_http_and_https_are_fetched(strict: Fetcher, url: str) -> None:
    with pytest.raises(FetchError, match="only http and https URLs can be fetched"):
        await strict.fetch(url)


async def test_a_redirect_to_another_scheme_is_refused(fetcher: Fetcher, fake_web: FakeWeb) -> None:
    with pytest.raises(FetchError, match=r"redirects to 'file:///etc/passwd', which uses file:"):
        await fetcher.fetch(fake_web.url("/redirect?to=file:///etc/passwd"))


def test_a_malformed_allowlist_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="fetch_allow_private"):
        Fetcher(allow_private="10.0.0.0/40")
