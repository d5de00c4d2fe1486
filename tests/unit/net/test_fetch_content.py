"""What `Fetcher` reads: main text, legacy Japanese charsets, PDFs; and its limits."""

from __future__ import annotations

import time

import pytest
from tests.fakes.web_server import (
    ARTICLE_TEXT,
    ARTICLE_TITLE,
    BOILERPLATE,
    JAPANESE_TEXT,
    JAPANESE_TITLE,
    PDF_TEXT,
    PDF_TITLE,
    FakeWeb,
)

from kaiwa.net.fetch import USER_AGENT, Fetcher, FetchError


async def test_an_article_keeps_its_main_text_and_drops_the_boilerplate(
    fetcher: Fetcher, fake_web: FakeWeb
) -> None:
    page = await fetcher.fetch(fake_web.url("/article"))
    assert page.title == ARTICLE_TITLE
    assert page.content_type == "text/html"
    assert page.url == fake_web.url("/article")
    assert ARTICLE_TEXT in page.text
    for line in BOILERPLATE:
        assert line not in page.text
    assert "Ten harbours to visit" not in page.text


@pytest.mark.parametrize("path", ["/ja/shift_jis", "/ja/meta", "/ja/euc-jp"])
async def test_japanese_pages_in_legacy_charsets_decode_correctly(
    fetcher: Fetcher, fake_web: FakeWeb, path: str
) -> None:
    page = await fetcher.fetch(fake_web.url(path))
    assert page.title == JAPANESE_TITLE
    assert JAPANESE_TEXT in page.text


async def test_a_pdf_becomes_its_text(fetcher: Fetcher, fake_web: FakeWeb) -> None:
    page = await fetcher.fetch(fake_web.url("/doc.pdf"))
    assert page.content_type == "application/pdf"
    assert page.title == PDF_TITLE
    assert PDF_TEXT in page.text


async def test_a_pdf_without_a_content_type_is_recognised(
    fetcher: Fetcher, fake_web: FakeWeb
) -> None:
    page = await fetcher.fetch(fake_web.url("/unlabelled"))
    assert page.content_type == "application/pdf"
    assert PDF_TEXT in page.text


@pytest.mark.parametrize(
    ("path", "content_type", "text"),
    [
        ("/plain", "text/plain", "Plain text, nothing to extract."),
        ("/notes.md", "text/markdown", "# Notes\n\nMarkdown is read as is."),
        ("/data.json", "application/json", '{"status": "ok"}'),
    ],
)
async def test_text_types_are_returned_as_they_are(
    fetcher: Fetcher, fake_web: FakeWeb, path: str, content_type: str, text: str
) -> None:
    page = await fetcher.fetch(fake_web.url(path))
    assert (page.content_type, page.text, page.title) == (content_type, text, None)


async def test_another_content_type_is_refused_with_its_name(
    fetcher: Fetcher, fake_web: FakeWeb
) -> None:
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(fake_web.url("/image.png"))
    assert "is image/png, which cannot be read as text" in caught.value.message
    assert "HTML, plain text, Markdown, JSON and PDF" in caught.value.message


@pytest.mark.parametrize("length", ["1", "0"])
async def test_a_body_over_max_bytes_is_refused(fake_web: FakeWeb, length: str) -> None:
    fetcher = Fetcher(allow_private="127.0.0.1", max_bytes=4096)
    try:
        with pytest.raises(FetchError, match=r"larger than the 4 KiB fetch_max_bytes limit"):
            await fetcher.fetch(fake_web.url(f"/big?size=200000&length={length}"))
        page = await fetcher.fetch(fake_web.url(f"/big?size=4096&length={length}"))
        assert len(page.text) == 4096
    finally:
        await fetcher.aclose()


async def test_a_slow_body_times_out_within_the_timeout(fake_web: FakeWeb) -> None:
    fetcher = Fetcher(allow_private="127.0.0.1", timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(FetchError, match=r"took longer than 0\.3 s"):
            await fetcher.fetch(fake_web.url("/slow?delay=5"))
    finally:
        await fetcher.aclose()
    assert time.monotonic() - started < 2.0


async def test_an_error_status_is_reported(fetcher: Fetcher, fake_web: FakeWeb) -> None:
    with pytest.raises(FetchError, match=r"/status/404 answered HTTP 404"):
        await fetcher.fetch(fake_web.url("/status/404"))


async def test_a_page_without_text_is_reported(fetcher: Fetcher, fake_web: FakeWeb) -> None:
    with pytest.raises(FetchError, match="has no readable text"):
        await fetcher.fetch(fake_web.url("/empty"))


async def test_a_closed_port_is_a_connection_error(fetcher: Fetcher) -> None:
    with pytest.raises(FetchError, match=r"could not connect to 127\.0\.0\.1"):
        await fetcher.fetch("http://127.0.0.1:1/")


async def test_requests_say_who_is_fetching(fetcher: Fetcher, fake_web: FakeWeb) -> None:
    await fetcher.fetch(fake_web.url("/plain"))
    assert fake_web.requests[0].headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("kaiwa/")
    assert USER_AGENT.endswith("(+fetch_web_content)")


async def test_credentials_in_the_url_are_not_repeated_in_errors(
    fetcher: Fetcher, fake_web: FakeWeb
) -> None:
    url = fake_web.url("/status/500").replace("http://", "http://alice:hunter2@")
    with pytest.raises(FetchError) as caught:
        await fetcher.fetch(url)
    assert "hunter2" not in caught.value.message
    assert "HTTP 500" in caught.value.message


@pytest.mark.parametrize("url", ["http://", "http://exa mple.com/", "not a url"])
async def test_a_malformed_url_is_reported(fetcher: Fetcher, url: str) -> None:
    with pytest.raises(FetchError):
        await fetcher.fetch(url)
