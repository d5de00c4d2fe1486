"""Browser tests: the web chat at `/`, in headless Chromium driven by Playwright, against a real
`kaiwa serve` started by the e2e suite's launcher.

The browser is Debian's Chromium (`/usr/bin/chromium`, or `KAIWA_TEST_CHROMIUM`); Playwright never
downloads one. Without it the tests that need it skip — unless `KAIWA_TEST_REQUIRE_BROWSER=1`
(CI), when they fail.

When a test fails, a screenshot of its page is saved under `tests/browser/artifacts/` and its path
printed; the page's console and the server's log are attached to the report.

Fixtures: `web_server` (session: one server for every browser test), `browser` (session),
`page` (a fresh context per test: empty storage), `chat` (a `ChatPage` on it),
`make_agent(name, script=..., tools=..., llm_model=...)` (a published agent) and `module_page`
(one page per module, to call the page's modules with tables of cases).

The page's browser speaks English (`locale`, "en-US") unless a test asks for another language:
`@pytest.mark.parametrize("locale", ["ja-JP"])` overrides the fixture.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from tests.browser.chat_page import ARTIFACTS, ChatPage
from tests.e2e.conftest import KaiwaServer, Launcher

CHROMIUM = os.environ.get("KAIWA_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
PAGE_TIMEOUT_MS = 15_000
LOG_TAIL_CHARS = 8_000

# `expect(...)` retries up to this long: generous for a loaded CI machine, still bounded.
expect.set_options(timeout=PAGE_TIMEOUT_MS)

_SERVERS: list[KaiwaServer] = []


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KaiwaServer]:
    server = Launcher(tmp_path_factory).start("browser")
    _SERVERS.append(server)
    try:
        page = server.client.get("/")
        if page.status_code != 200 or "text/html" not in page.headers.get("content-type", ""):
            pytest.fail(
                f"`kaiwa serve` does not serve the web chat at / (HTTP {page.status_code}): "
                "include kaiwa.server.routes.web.router in create_app",
                pytrace=False,
            )
        yield server
    finally:
        _SERVERS.remove(server)
        server.stop()


# Per module, not per session: Playwright's sync API runs an event loop on this thread while it
# is open, and the asyncio tests collected after these could not run theirs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("KAIWA_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    # Chromium's sandbox refuses to start as root (containers, CI); elsewhere it stays on.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def locale() -> str:
    """The browser's language (`navigator.languages`), which the page speaks unless told."""
    return "en-US"


@pytest.fixture
def page(browser: Browser, locale: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(locale=locale, timezone_id="Asia/Tokyo")
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    console: list[str] = []
    errors: list[str] = []
    page.on("console", lambda message: console.append(_describe(message)))
    page.on("pageerror", lambda error: errors.append(f"{error.name}: {error.message}"))
    request.node.browser_console = console
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="module")
def module_page(browser: Browser, web_server: KaiwaServer) -> Iterator[Page]:
    """One page on the web chat for a whole module, to import its modules into and call them
    (`await import("/static/markdown.js")`): for tables of cases, not for chatting."""
    context = browser.new_context(locale="en-US", timezone_id="Asia/Tokyo")
    page = context.new_page()
    page.goto(f"{web_server.base_url}/")
    yield page
    context.close()


@pytest.fixture
def chat(page: Page, web_server: KaiwaServer, locale: str) -> ChatPage:
    language = locale.split("-")[0]
    return ChatPage(page, web_server.base_url, web_server.api_key, language=language)


@pytest.fixture(scope="session")
def make_agent(web_server: KaiwaServer) -> Callable[..., str]:
    def make(
        name: str,
        *,
        script: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        llm_model: str = "scripted/x",
    ) -> str:
        meta = {"model_settings": {"script": script}} if script is not None else {}
        agent = web_server.create_agent(
            name=name, llm_model=llm_model, unified_tools=tools or [], meta=meta
        )
        return str(agent["id"])

    return make


def _describe(message: ConsoleMessage) -> str:
    return f"[{message.type}] {message.text}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if not report.failed:
        return report
    page = getattr(item, "funcargs", {}).get("page")
    if isinstance(page, Page) and not page.is_closed():
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", item.nodeid)[-150:]
        path = ARTIFACTS / f"{name}.{report.when}.png"
        try:
            page.screenshot(path=str(path), full_page=True)
        except Exception as exc:  # a crashed page still fails the test, with a note
            report.sections.append(("browser screenshot", f"could not take one: {exc!r}"))
        else:
            print(f"\nbrowser screenshot: {path}", file=sys.stderr)
            report.sections.append(("browser screenshot", str(path)))
    console = getattr(item, "browser_console", None)
    if console:
        report.sections.append(("browser console", "\n".join(console)))
    for server in _SERVERS:
        text = server.log_text()
        if len(text) > LOG_TAIL_CHARS:
            text = "…\n" + text[-LOG_TAIL_CHARS:]
        report.sections.append((f"kaiwa server log ({server.log_path})", text))
    return report
