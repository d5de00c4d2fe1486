"""The web chat's files as `kaiwa serve` sends them (no browser needed)."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

import pytest
from tests.e2e.conftest import KaiwaServer

from kaiwa.server.routes import web

REPO = Path(__file__).resolve().parents[2]
CLIENT_SRC = REPO / "clients" / "js" / "src"
VENDORED = web.WEB_ROOT / "vendor" / "kaiwa-client"
IMPORT = re.compile(r"""^(?:import|export)\b[^;]*?\bfrom\s+["'](\.{1,2}/[^"']+)["']""", re.M)


def test_the_vendored_js_client_is_identical_to_clients_js_src() -> None:
    source = {path.name: path.read_bytes() for path in CLIENT_SRC.glob("*.js")}
    copy = {path.name: path.read_bytes() for path in VENDORED.glob("*.js")}
    assert source, f"no client sources in {CLIENT_SRC}"
    stale = sorted(
        name for name in source.keys() | copy.keys() if source.get(name) != copy.get(name)
    )
    assert not stale, (
        f"{VENDORED} differs from {CLIENT_SRC} in {stale}: run scripts/sync-web-client"
    )


def test_the_page_is_served_at_the_root_with_a_strict_content_security_policy(
    web_server: KaiwaServer,
) -> None:
    response = web_server.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="static/app.js">' in response.text


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/static/app.js", "text/javascript; charset=utf-8"),
        ("/static/style.css", "text/css; charset=utf-8"),
        ("/static/vendor/kaiwa-client/index.js", "text/javascript; charset=utf-8"),
    ],
)
def test_static_files_are_served_with_their_media_type(
    web_server: KaiwaServer, path: str, media_type: str
) -> None:
    response = web_server.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/static/missing.js",
        "/static/../server/app.py",
        "/static/%2e%2e/%2e%2e/pyproject.toml",
        "/static/..%2f..%2fconfig.py",
        "/static/vendor/../../cli.py",
        "/static/",
    ],
)
def test_only_the_listed_files_are_served(web_server: KaiwaServer, path: str) -> None:
    assert web_server.client.get(path).status_code == 404


def test_every_module_the_page_imports_is_served() -> None:
    listed = web.static_files()
    assert {"index.html", "app.js", "style.css", "icon.svg"} <= listed.keys()
    assert not [name for name in listed if name.endswith(".py")]
    for name, path in listed.items():
        if not name.endswith(".js"):
            continue
        for target in IMPORT.findall(path.read_text(encoding="utf-8")):
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            assert resolved in listed, f"{name} imports {target}, which is not served"
