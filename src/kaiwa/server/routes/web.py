"""The web chat: the page at `/` and its files at `/static/…`, from `kaiwa/web` (no build step).

The page is plain ES modules. It imports the JavaScript client from `web/vendor/kaiwa-client/`, a
copy of `clients/js/src` that `scripts/sync-web-client` refreshes and a test keeps identical, so
an installed wheel serves the same client without reaching outside the package.

Deliberate oddities:
- The files are listed once, at import: a request can only name one of them, so no part of a URL
  ever becomes a file-system path (no traversal to guard against).
- The page is sent with a strict Content-Security-Policy (scripts and styles from this origin
  only, no inline script): if an answer's markdown ever slipped HTML through, it still could not
  run.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, PlainTextResponse, Response

import kaiwa

WEB_ROOT = Path(kaiwa.__file__).resolve().parent / "web"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# What the page needs, and nothing more: the API on this origin, its own scripts and styles.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
_COMMON_HEADERS = {
    "Cache-Control": "no-cache",  # revalidated each time: an upgrade never serves stale modules
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_PAGE_HEADERS = {
    **_COMMON_HEADERS,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
}


def static_files(root: Path = WEB_ROOT) -> dict[str, Path]:
    """Each file the page may load, by its path under `/static/` (`vendor/kaiwa-client/x.js`)."""
    if not root.is_dir():
        return {}
    return {
        path.relative_to(root).as_posix(): path
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in _MEDIA_TYPES
    }


_FILES = static_files()

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/")
async def page() -> Response:
    index = _FILES.get("index.html")
    if index is None:
        return PlainTextResponse("The web chat is not installed", status_code=404)
    return FileResponse(index, media_type=_MEDIA_TYPES[".html"], headers=_PAGE_HEADERS)


@router.get("/static/{name:path}")
async def static(name: str) -> Response:
    path = _FILES.get(name)
    if path is None:
        return PlainTextResponse("Not found", status_code=404, headers=_COMMON_HEADERS)
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_COMMON_HEADERS)
