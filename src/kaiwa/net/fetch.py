"""`fetch_web_content`'s backend: one URL in, the readable text of the page (or PDF) out.

    fetcher = Fetcher(allow_private=settings.fetch_allow_private,
                      max_bytes=settings.fetch_max_bytes, timeout=settings.fetch_timeout)
    page = await fetcher.fetch("https://example.com/article")
    page.url, page.title, page.text, page.content_type
    await fetcher.aclose()

Every refusal and failure is a `FetchError` whose `message` says what was refused or failed and
why, fit to show the user (or the model): a private address, a redirect loop, HTTP 404, a body
over `max_bytes`, a timeout, a type that is not text.

Deliberate choices:

- Connections go through `GuardedTransport`: each one resolves the name once, checks every
  address against the `AddressPolicy` and connects to a checked address, so redirects and
  DNS rebinding are covered without a separate check here. Redirects are followed by this module
  (at most `MAX_REDIRECTS`), never by httpx, so each hop's scheme is checked too.
- `timeout` bounds the whole download (every hop, connecting and reading); extraction, which
  needs no network, runs afterwards in a thread.
- No cookies are kept: one `Fetcher` serves every chat, and a cookie set for one user's fetch
  must not be sent with another's. Proxies from the environment are not used either: a proxy
  would resolve names itself, after the address check.
- A body with no content type, or `application/octet-stream`, is read if it starts like a PDF or
  an HTML document, and refused otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import Message
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import PurePosixPath
from typing import Literal, get_args

import httpx

import kaiwa
from kaiwa.net.addresses import AddressPolicy, BlockedAddress
from kaiwa.net.extract import UnreadableDocument, decode, read_html, read_pdf
from kaiwa.net.transport import GuardedTransport

__all__ = ["MAX_REDIRECTS", "USER_AGENT", "FetchError", "FetchedPage", "Fetcher"]

MAX_REDIRECTS = 5
USER_AGENT = f"kaiwa/{kaiwa.__version__} (+fetch_web_content)"

ContentType = Literal[
    "text/html",
    "application/xhtml+xml",
    "text/plain",
    "text/markdown",
    "application/pdf",
    "application/json",
]
_READABLE: frozenset[str] = frozenset(get_args(ContentType))
_UNLABELLED = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ACCEPT = (
    "text/html,application/xhtml+xml,text/markdown;q=0.9,text/plain;q=0.9,"
    "application/pdf;q=0.8,application/json;q=0.8,*/*;q=0.1"
)


@dataclass(frozen=True, slots=True)
class FetchedPage:
    url: str
    """The final URL, after redirects."""
    title: str | None
    text: str
    """The main text (no navigation or boilerplate), or the PDF's text."""
    content_type: str
    """The media type it was read as, e.g. `text/html`, `application/pdf`, `text/plain`."""


class FetchError(Exception):
    """A fetch refused or failed; `message` says what and why, for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class _Download:
    url: httpx.URL
    media_type: str
    charset: str | None
    body: bytes


class Fetcher:
    """Fetches pages over one pooled client; `aclose()` when done."""

    def __init__(
        self,
        *,
        allow_private: str = "",
        max_bytes: int = 5 * 1024 * 1024,
        timeout: float = 15.0,
    ) -> None:
        """`allow_private`: comma-separated hosts or CIDRs that may be reached although they are
        loopback, private or link-local; raises `ValueError` for an entry that is neither."""
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            transport=GuardedTransport(AddressPolicy.parse(allow_private)),
            headers={"User-Agent": USER_AGENT, "Accept": _ACCEPT},
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,
        )

    async def fetch(self, url: str) -> FetchedPage:
        """The page at `url` as text; raises `FetchError`."""
        target = _parse_url(url)
        try:
            async with asyncio.timeout(self._timeout):
                download = await self._download(target)
        except TimeoutError:
            raise FetchError(
                f"fetching {_shown(target)} took longer than {self._timeout:g} s"
            ) from None
        return await asyncio.to_thread(_read, download)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _download(self, url: httpx.URL) -> _Download:
        for _hop in range(MAX_REDIRECTS + 1):
            async with self._get(url) as response:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    url = _parse_url(location, base=url)
                    continue
                if not 200 <= response.status_code < 300:
                    raise FetchError(f"{_shown(url)} answered HTTP {response.status_code}")
                media_type, charset = _content_type(response.headers.get("content-type"))
                if media_type not in _READABLE | _UNLABELLED:
                    raise _unreadable_type(url, media_type)
                body = await self._read_body(response, url)
                if media_type in _UNLABELLED:
                    media_type = _sniff(body) or ""
                    if not media_type:
                        raise _unreadable_type(url, "binary data (application/octet-stream)")
                return _Download(url=url, media_type=media_type, charset=charset, body=body)
        raise FetchError(f"{_shown(url)}: too many redirects (more than {MAX_REDIRECTS})")

    @contextlib.asynccontextmanager
    async def _get(self, url: httpx.URL) -> AsyncIterator[httpx.Response]:
        with _network_errors(url):
            async with self._client.stream("GET", url) as response:
                yield response

    async def _read_body(self, response: httpx.Response, url: httpx.URL) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise self._too_large(url)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                raise self._too_large(url)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, url: httpx.URL) -> FetchError:
        limit = _size(self._max_bytes)
        return FetchError(f"{_shown(url)} is larger than the {limit} fetch_max_bytes limit")


def _read(download: _Download) -> FetchedPage:
    """Runs in a thread: the CPU-heavy part."""
    url, media_type = download.url, download.media_type
    try:
        if media_type == "application/pdf":
            title, text = read_pdf(download.body, filename=_filename(url))
        elif media_type in ("text/html", "application/xhtml+xml"):
            html = decode(download.body, download.charset, html=True)
            title, text = read_html(html, url=str(url))
        else:
            title, text = None, decode(download.body, download.charset, html=False).strip()
    except UnreadableDocument as exc:
        raise FetchError(f"{_shown(url)}: {exc.message}") from None
    if not text:
        raise FetchError(f"{_shown(url)} has no readable text (it may need JavaScript)")
    return FetchedPage(url=str(url), title=title, text=text, content_type=media_type)


@contextlib.contextmanager
def _network_errors(url: httpx.URL) -> Iterator[None]:
    host = url.host
    try:
        yield
    except BlockedAddress as exc:
        raise FetchError(
            f"refused to fetch {_shown(url)}: {exc.message}; only public addresses may be "
            "fetched unless the server allows others (KAIWA_FETCH_ALLOW_PRIVATE)"
        ) from None
    except httpx.TimeoutException:
        raise FetchError(f"{host} did not answer in time") from None
    except httpx.ConnectError as exc:
        raise FetchError(f"could not connect to {host}: {exc}") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"the connection to {host} failed ({type(exc).__name__})") from None


def _parse_url(raw: str, *, base: httpx.URL | None = None) -> httpx.URL:
    """`raw` as an absolute http(s) URL, resolved against `base` for a redirect's `Location`."""
    what = repr(raw[:200]) if base is None else f"{_shown(base)} redirects to {raw[:200]!r}, which"
    try:
        url = httpx.URL(raw) if base is None else base.join(raw)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise FetchError(f"{what} is not a valid URL") from None
    if url.scheme not in ("http", "https"):
        problem = f"uses {url.scheme}:" if url.scheme else "is not an absolute URL"
        raise FetchError(f"{what} {problem}; only http and https URLs can be fetched")
    if not url.host:
        raise FetchError(f"{what} has no host")
    return url.copy_with(fragment=None)


def _content_type(header: str | None) -> tuple[str, str | None]:
    message = Message()
    message["content-type"] = header or ""
    charset = message.get_param("charset")
    media_type = (header or "").split(";", 1)[0].strip().lower()
    return media_type, charset if isinstance(charset, str) else None


def _sniff(body: bytes) -> str | None:
    head = body[:512].lstrip().lower()
    if head.startswith(b"%pdf-"):
        return "application/pdf"
    if head.startswith((b"<!doctype html", b"<html")):
        return "text/html"
    return None


def _unreadable_type(url: httpx.URL, media_type: str) -> FetchError:
    return FetchError(
        f"{_shown(url)} is {media_type}, which cannot be read as text "
        "(readable: HTML, plain text, Markdown, JSON and PDF)"
    )


def _shown(url: httpx.URL) -> str:
    """The URL for a message: without user name or password, and not too long."""
    shown = str(url.copy_with(username=None, password=None)) if url.userinfo else str(url)
    return shown if len(shown) <= 200 else shown[:199] + "…"


def _filename(url: httpx.URL) -> str:
    name = PurePosixPath(url.path).name
    return name if name.lower().endswith(".pdf") else f"{name or 'document'}.pdf"


def _size(count: int) -> str:
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"
