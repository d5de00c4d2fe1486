"""Each `web_search` provider against its fake: the request it sends, the results it reads back,
and the errors it maps (never quoting the key)."""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator

import pytest
from tests.fakes.search_servers import (
    BRAVE_KEY,
    TAVILY_KEY,
    FakeSearch,
    NotJSON,
    Provider,
    Stall,
    Status,
)

from kaiwa.config import WebSearchSettings
from kaiwa.net.search import (
    BraveSearch,
    SearchError,
    SearchResult,
    SearxngSearch,
    TavilySearch,
    WebSearch,
    build_web_search,
)

PROVIDERS: list[Provider] = ["searxng", "brave", "tavily"]
KEYS = {"searxng": None, "brave": BRAVE_KEY, "tavily": TAVILY_KEY}


def settings_for(
    fake: FakeSearch, provider: Provider, *, api_key: str | None = None, timeout: float = 5.0
) -> WebSearchSettings:
    return WebSearchSettings(
        provider=provider,
        base_url=fake.base_url_for(provider),
        api_key=api_key or KEYS[provider],
        timeout=timeout,
    )


@pytest.fixture(params=PROVIDERS)
async def search(
    request: pytest.FixtureRequest, fake_search: FakeSearch
) -> AsyncIterator[WebSearch]:
    backend = build_web_search(settings_for(fake_search, request.param))
    assert backend is not None
    yield backend
    await backend.aclose()


async def test_results_come_back_as_plain_text(search: WebSearch, fake_search: FakeSearch) -> None:
    results = await search.search("fastapi lifespan")
    assert results[0] == SearchResult(
        title="FastAPI lifespan events",
        url="https://fastapi.tiangolo.com/advanced/events/",
        snippet="Use the lifespan parameter & an async context manager.",
    )
    assert results[1].snippet == (
        "Graceful shutdown: --timeout-graceful-shutdown sets the seconds to wait."
    )
    assert results[2].snippet == "Answers mentioning on_event and lifespan."
    assert [q.query for q in fake_search.queries] == ["fastapi lifespan"]


async def test_max_results_caps_the_results(search: WebSearch, fake_search: FakeSearch) -> None:
    results = await search.search("fastapi", max_results=2)
    assert len(results) == 2


async def test_domains_restrict_the_results(search: WebSearch, fake_search: FakeSearch) -> None:
    results = await search.search("shutdown", domains=["uvicorn.org", "https://StackOverflow.com/"])
    assert [r.url for r in results] == [
        "https://www.uvicorn.org/settings/",
        "https://stackoverflow.com/questions/12345/fastapi-startup",
    ]


async def test_domains_become_site_operators_for_searxng_and_brave(
    fake_search: FakeSearch,
) -> None:
    for provider in ("searxng", "brave"):
        backend = build_web_search(settings_for(fake_search, provider))
        assert backend is not None
        await backend.search("shutdown", domains=["uvicorn.org", "stackoverflow.com"])
        await backend.aclose()
    assert [q.query for q in fake_search.queries] == [
        "shutdown site:uvicorn.org OR site:stackoverflow.com"
    ] * 2


async def test_domains_are_enforced_when_the_engine_ignores_site_operators(
    fake_search: FakeSearch,
) -> None:
    fake_search.honour_sites = False
    backend = SearxngSearch(base_url=fake_search.base_url_for("searxng"))
    results = await backend.search("lifespan", domains=["tiangolo.com"])
    await backend.aclose()
    assert [r.url for r in results] == ["https://fastapi.tiangolo.com/advanced/events/"]


async def test_searxng_asks_for_json(fake_search: FakeSearch) -> None:
    backend = SearxngSearch(base_url=fake_search.base_url_for("searxng") + "/")
    await backend.search("q")
    await backend.aclose()
    assert fake_search.queries[0].params == {"q": "q", "format": "json"}


async def test_brave_sends_its_key_and_count(fake_search: FakeSearch) -> None:
    backend = BraveSearch(api_key=BRAVE_KEY, base_url=fake_search.base_url_for("brave"))
    await backend.search("q", max_results=50)
    await backend.aclose()
    (query,) = fake_search.queries
    assert query.headers["x-subscription-token"] == BRAVE_KEY
    assert query.params == {"q": "q", "count": "20"}


async def test_tavily_sends_a_bearer_key_and_include_domains(fake_search: FakeSearch) -> None:
    backend = TavilySearch(api_key=TAVILY_KEY, base_url=fake_search.base_url_for("tavily"))
    await backend.search("q", domains=["uvicorn.org"], max_results=3)
    await backend.aclose()
    (query,) = fake_search.queries
    assert query.headers["authorization"] == f"Bearer {TAVILY_KEY}"
    assert query.body is not None
    assert query.body["query"] == "q"
    assert query.body["max_results"] == 3
    assert query.body["include_domains"] == ["uvicorn.org"]
    assert TAVILY_KEY not in str(query.body)


@pytest.mark.parametrize("provider", ["brave", "tavily"])
async def test_a_rejected_key_is_reported_without_the_key(
    fake_search: FakeSearch, provider: Provider
) -> None:
    wrong = "wrong-secret-key-0000"
    backend = build_web_search(settings_for(fake_search, provider, api_key=wrong))
    assert backend is not None
    with pytest.raises(SearchError) as caught:
        await backend.search("q")
    await backend.aclose()
    assert caught.value.message == f"{provider} search failed: HTTP 401 (API key rejected)"
    # The fake's 401 body quotes the key back: none of it may reach the error or its traceback.
    assert wrong not in "".join(traceback.format_exception(caught.value))


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (Status(500), "search failed: HTTP 500 (server error)"),
        (Status(429), "search failed: HTTP 429 (rate limited)"),
        (NotJSON(), "search returned a body that is not JSON"),
        (Stall(5.0), "search timed out after 0.3 s"),
    ],
)
async def test_failures_become_search_errors(
    fake_search: FakeSearch, fault: Status | NotJSON | Stall, message: str
) -> None:
    for provider in PROVIDERS:
        fake_search.enqueue(fault)
        backend = build_web_search(settings_for(fake_search, provider, timeout=0.3))
        assert backend is not None
        with pytest.raises(SearchError) as caught:
            await backend.search("q")
        await backend.aclose()
        assert caught.value.message == f"{provider} {message}"
        for key in (BRAVE_KEY, TAVILY_KEY):
            assert key not in caught.value.message


async def test_json_of_the_wrong_shape_is_reported(fake_search: FakeSearch) -> None:
    fake_search.enqueue(NotJSON(body='{"results": "nope"}'))
    backend = SearxngSearch(base_url=fake_search.base_url_for("searxng"))
    with pytest.raises(SearchError, match="searxng search returned JSON of an unexpected shape"):
        await backend.search("q")
    await backend.aclose()


async def test_searxng_without_the_json_format_gets_a_hint(fake_search: FakeSearch) -> None:
    fake_search.enqueue(Status(403))
    backend = SearxngSearch(base_url=fake_search.base_url_for("searxng"))
    with pytest.raises(SearchError, match="json format enabled"):
        await backend.search("q")
    await backend.aclose()


async def test_an_unreachable_server_is_reported() -> None:
    backend = BraveSearch(api_key=BRAVE_KEY, base_url="http://127.0.0.1:1")
    with pytest.raises(SearchError, match=r"brave search failed: could not reach 127\.0\.0\.1"):
        await backend.search("q")
    await backend.aclose()


async def test_an_empty_query_is_refused(search: WebSearch) -> None:
    with pytest.raises(SearchError, match="needs a query"):
        await search.search("   ")


def test_build_gives_none_for_no_provider() -> None:
    assert build_web_search(WebSearchSettings()) is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (WebSearchSettings(provider="searxng"), "'searxng' needs base_url"),
        (WebSearchSettings(provider="brave"), "'brave' needs api_key"),
        (WebSearchSettings(provider="tavily", base_url="http://x"), "'tavily' needs api_key"),
    ],
)
def test_build_refuses_a_misconfiguration(settings: WebSearchSettings, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_web_search(settings)


def test_build_uses_the_vendor_url_by_default() -> None:
    brave = build_web_search(WebSearchSettings(provider="brave", api_key="k"))
    tavily = build_web_search(WebSearchSettings(provider="tavily", api_key="k"))
    assert isinstance(brave, BraveSearch)
    assert brave.name == "brave"
    assert isinstance(tavily, TavilySearch)
    assert tavily.name == "tavily"
    assert brave.base_url == "https://api.search.brave.com/"
    assert tavily.base_url == "https://api.tavily.com/"
