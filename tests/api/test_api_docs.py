"""/docs (Swagger UI) and /redoc work offline: every file they load is served by kaiwa itself."""

from __future__ import annotations

import re

import pytest
from api_support import Api

# Every URL a page names: attributes, and the `url:` of Swagger UI's setup script.
_URLS = re.compile(r"""(?:src|href|spec-url)="([^"]*)"|\burl:\s*'([^']*)'""")
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


@pytest.mark.parametrize(
    ("page", "needs"),
    [
        ("/docs", {".js", ".css", ".json"}),
        ("/redoc", {".js", ".json"}),
    ],
)
async def test_the_docs_pages_load_only_files_kaiwa_serves(
    api: Api, page: str, needs: set[str]
) -> None:
    response = await api.client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    urls = [a or b for a, b in _URLS.findall(html)]
    assert urls, html
    # No CDN, no font service: nothing on another origin.
    assert "//" not in "".join(urls), urls
    assert not re.search(r"https?://", html), html

    seen: set[str] = set()
    for url in urls:
        assert url.startswith("/"), url
        asset = await api.client.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rindex(".") :]
        assert asset.headers["content-type"].startswith(_TYPES[suffix]), url
        assert len(asset.content) > 1000, url
        seen.add(suffix)
    assert needs <= seen, urls


async def test_the_docs_assets_folder_serves_files_only(api: Api) -> None:
    for path in ("/docs/assets/", "/docs/assets/nothing.js", "/docs/assets/../../app.py"):
        assert (await api.client.get(path)).status_code == 404, path
