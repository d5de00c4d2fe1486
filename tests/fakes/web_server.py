"""A fake web site on a real loopback socket, for `kaiwa.net.fetch`'s tests.

Pages, by path (`fake.url("/article")` gives the absolute URL):

- `/article`: an English article inside navigation, sidebar and footer boilerplate
  (`ARTICLE_TEXT` is in its main text, `BOILERPLATE` only around it).
- `/ja/shift_jis` (charset in the header), `/ja/meta` (charset only in `<meta>`), `/ja/euc-jp`
  (no declaration at all): the Japanese page `JAPANESE_TEXT` in legacy encodings.
- `/plain`, `/notes.md`, `/data.json`: text types; `/empty`: HTML with no visible text.
- `/doc.pdf` (`PDF_TEXT`, `PDF_TITLE`), `/unlabelled` (the same PDF with no content type).
- `/image.png`: a type that is not text.
- `/redirect?to=URL`: a 302 to `URL`; `/chain/N?then=URL`: N redirects in a row, then a 302 to
  `URL` (or the plain page); `/loop`: redirects to itself forever.
- `/big?size=N&length=0|1`: N bytes of text, with or without a `Content-Length`.
- `/slow?delay=S`: headers and a first chunk at once, the rest after S seconds.
- `/status/CODE`: an empty answer with that status; `/echo/host`: the `Host` header it received.

Every request is recorded (`path` with query, headers) for the test to inspect. As a pytest fixture,
register this module in the root conftest's `pytest_plugins` and ask for `fake_web`.

`LoopbackServer` is the uvicorn-in-a-thread harness this fake and `tests.fakes.search_servers`
share; like `tests.fakes.openai_server`, each server runs in its own thread and event loop so that
a stalled answer never blocks the test's loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Self

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

ARTICLE_TITLE = "How Lighthouse Lenses Work"
ARTICLE_TEXT = (
    "A Fresnel lens folds the curved surface of a large lens into concentric rings of prisms, "
    "so that a lighthouse can throw a beam thirty kilometres out to sea without a lens of "
    "impossible weight."
)
BOILERPLATE = ("Subscribe to our newsletter", "Copyright 2024 Harbour Media", "Home | Archive")
JAPANESE_TITLE = "営業時間のご案内"
JAPANESE_TEXT = (
    "当店の営業時間は午前十時から午後八時までです。定休日は毎週水曜日となっております。"
    "年末年始の営業時間につきましては、店頭の掲示またはお電話にてご確認ください。"
    "駐車場は店舗の裏手に二十台分をご用意しております。ご来店を心よりお待ちしております。"
)
PDF_TITLE = "Quarterly Lighthouse Report"
PDF_TEXT = "Beacon maintenance completed on schedule"


@dataclass
class RecordedRequest:
    path: str
    """Path and query, as sent."""
    headers: dict[str, str]
    """Lower-case names, as Starlette gives them."""


class LoopbackServer:
    """Serves `app` on 127.0.0.1 from a thread; `start()`/`stop()` or a context manager."""

    def __init__(self, app: ASGIApp, *, name: str, port: int = 0) -> None:
        self.app = app
        self.port = port
        self._name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_config=None, log_level="warning", access_log=False, lifespan="off"
        )
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=self._name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 5.0
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the {self._name} server did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = self._server.force_exit = True
        self._thread.join(timeout=5.0)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class FakeWeb(LoopbackServer):
    def __init__(self, *, port: int = 0) -> None:
        self.requests: list[RecordedRequest] = []
        routes = [
            Route("/article", self._article),
            Route("/ja/shift_jis", self._shift_jis),
            Route("/ja/meta", self._meta),
            Route("/ja/euc-jp", self._euc_jp),
            Route("/plain", self._plain),
            Route("/notes.md", self._markdown),
            Route("/data.json", self._json),
            Route("/empty", self._empty),
            Route("/doc.pdf", self._pdf),
            Route("/unlabelled", self._unlabelled),
            Route("/image.png", self._image),
            Route("/redirect", self._redirect),
            Route("/chain/{hops:int}", self._chain),
            Route("/loop", self._loop),
            Route("/big", self._big),
            Route("/slow", self._slow),
            Route("/status/{code:int}", self._status),
            Route("/echo/host", self._echo_host),
        ]
        app = Starlette(routes=routes)
        app.add_middleware(_Recorder, sink=self.requests)
        super().__init__(app, name="fake-web", port=port)

    def url(self, path: str) -> str:
        return self.base_url + path

    def reset(self) -> None:
        self.requests.clear()

    @property
    def paths(self) -> list[str]:
        return [request.path for request in self.requests]

    async def _article(self, request: Request) -> Response:
        return _html(ARTICLE_PAGE, "utf-8")

    async def _shift_jis(self, request: Request) -> Response:
        return _html(_japanese_page(""), "cp932", header_charset="Shift_JIS")

    async def _meta(self, request: Request) -> Response:
        return _html(_japanese_page('<meta charset="Shift_JIS">'), "cp932", header_charset=None)

    async def _euc_jp(self, request: Request) -> Response:
        return _html(_japanese_page(""), "euc_jp", header_charset=None)

    async def _plain(self, request: Request) -> Response:
        return PlainTextResponse("Plain text, nothing to extract.\n")

    async def _markdown(self, request: Request) -> Response:
        return Response("# Notes\n\nMarkdown is read as is.\n", media_type="text/markdown")

    async def _json(self, request: Request) -> Response:
        return Response('{"status": "ok"}', media_type="application/json")

    async def _empty(self, request: Request) -> Response:
        return _html("<html><head><script>render()</script></head><body></body></html>", "utf-8")

    async def _pdf(self, request: Request) -> Response:
        return Response(make_pdf(PDF_TITLE, [PDF_TEXT]), media_type="application/pdf")

    async def _unlabelled(self, request: Request) -> Response:
        response = Response(make_pdf(PDF_TITLE, [PDF_TEXT]))
        del response.headers["content-type"]
        return response

    async def _image(self, request: Request) -> Response:
        return Response(b"\x89PNG\r\n\x1a\n" + bytes(64), media_type="image/png")

    async def _redirect(self, request: Request) -> Response:
        return RedirectResponse(request.query_params["to"], status_code=302)

    async def _chain(self, request: Request) -> Response:
        hops = request.path_params["hops"]
        then = request.query_params.get("then")
        if hops > 0:
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(f"/chain/{hops - 1}{query}", status_code=302)
        if then:
            return RedirectResponse(then, status_code=302)
        return PlainTextResponse("End of the chain.")

    async def _loop(self, request: Request) -> Response:
        return RedirectResponse("/loop", status_code=301)

    async def _big(self, request: Request) -> Response:
        size = int(request.query_params["size"])
        if request.query_params.get("length", "1") == "1":
            return PlainTextResponse("a" * size)

        async def body() -> AsyncIterator[bytes]:
            for start in range(0, size, 1024):
                yield b"a" * min(1024, size - start)

        return StreamingResponse(body(), media_type="text/plain")

    async def _slow(self, request: Request) -> Response:
        delay = float(request.query_params.get("delay", "5"))

        async def body() -> AsyncIterator[bytes]:
            yield b"The first part arrives at once. "
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.02)
            yield b"The rest arrives late."

        return StreamingResponse(body(), media_type="text/plain")

    async def _status(self, request: Request) -> Response:
        return Response(b"", status_code=request.path_params["code"])

    async def _echo_host(self, request: Request) -> Response:
        return PlainTextResponse(request.headers["host"])


class _Recorder:
    def __init__(self, app: ASGIApp, sink: list[RecordedRequest]) -> None:
        self.app = app
        self.sink = sink

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            self.sink.append(RecordedRequest(path=path, headers=dict(request.headers)))
        await self.app(scope, receive, send)


def _html(page: str, encoding: str, *, header_charset: str | None = "utf-8") -> Response:
    media_type = "text/html" if header_charset is None else f"text/html; charset={header_charset}"
    response = Response(page.encode(encoding), media_type="text/html")
    response.headers["content-type"] = media_type  # Starlette would add its own charset
    return response


ARTICLE_PAGE = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{ARTICLE_TITLE}</title></head>
<body>
<header><nav><a href="/">Home</a> | <a href="/archive">Archive</a></nav>
<p class="promo">{BOILERPLATE[0]}</p></header>
<aside class="sidebar"><h3>Popular</h3><ul><li><a href="/1">Ten harbours to visit</a></li>
<li><a href="/2">Why fog horns sound low</a></li></ul></aside>
<main><article>
<h1>{ARTICLE_TITLE}</h1>
<p>{ARTICLE_TEXT}</p>
<p>Before Augustin Fresnel's design of 1822, lighthouses relied on mirrors and open flames whose
light scattered in every direction, and most of it was wasted on the sky. His lens gathered that
stray light and bent it into a single horizontal beam.</p>
<p>Modern lighthouses often use small acrylic lenses and LED lamps, but many of the old glass
lenses are still turning, kept by volunteers who clean the prisms every week.</p>
</article></main>
<footer><p>{BOILERPLATE[1]}</p><p>{BOILERPLATE[2]}</p></footer>
</body></html>
"""


def _japanese_page(meta: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="ja"><head>{meta}<title>{JAPANESE_TITLE}</title></head>
<body><nav><a href="/">トップ</a></nav>
<article><h1>{JAPANESE_TITLE}</h1><p>{JAPANESE_TEXT}</p>
<p>{JAPANESE_TEXT}</p></article>
</body></html>
"""


def make_pdf(title: str, lines: list[str]) -> bytes:
    """A small valid one-page PDF (Helvetica, ASCII `lines`) with `title` in its metadata."""
    text = " ".join(
        f"({line}) Tj 0 -16 Td" for line in (_pdf_escape(line) for line in lines)
    ).encode("latin-1")
    content = b"BT /F1 12 Tf 72 720 Td " + text + b" ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
        b"<< /Title (" + _pdf_escape(title).encode("latin-1") + b") >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {len(objects)} 0 R >>\n"
        f"startxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


@pytest.fixture(scope="session")
def _fake_web_server() -> Iterator[FakeWeb]:
    with FakeWeb() as fake:
        yield fake


@pytest.fixture
def fake_web(_fake_web_server: FakeWeb) -> FakeWeb:
    """One server for the session, its recorded requests cleared for each test."""
    _fake_web_server.reset()
    return _fake_web_server
