"""`web_search`'s backends: SearXNG, Brave Search and Tavily behind one small protocol.

    search = build_web_search(settings.web_search)  # None when the provider is "none"
    results = await search.search("uvicorn graceful shutdown", domains=["uvicorn.dev"])
    [(r.title, r.url, r.snippet) for r in results]
    await search.aclose()

Each provider maps a query out to its public HTTP API and the JSON back in to `SearchResult`s:

- `searxng`: `GET {base_url}/search?q=...&format=json`; `results[].title/url/content`.
- `brave`: `GET {base_url}/res/v1/web/search?q=...&count=N`, key in `X-Subscription-Token`;
  `web.results[].title/url/description`. `base_url` defaults to `https://api.search.brave.com`.
- `tavily`: `POST {base_url}/search`, key as `Authorization: Bearer`, JSON body with `query`,
  `max_results`, `include_domains`; `results[].title/url/content`. `base_url` defaults to
  `https://api.tavily.com`.

Every failure is a `SearchError` whose message is built here from the provider's name, the status
code or the kind of failure, never from the response body or the request: both can hold the key.

Deliberate choices:

- `domains` goes to Tavily as `include_domains`, and to SearXNG and Brave as `site:` operators
  joined with OR. Engines behind SearXNG may ignore the operators, so results outside the domains
  (or their subdomains) are dropped here too, for every provider.
- Titles and snippets come with markup (Brave wraps matches in `<strong>`): tags are stripped and
  entities decoded.
"""

from __future__ import annotations

import asyncio
import html
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httpx
from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from kaiwa.config import WebSearchSettings

__all__ = [
    "BraveSearch",
    "SearchError",
    "SearchResult",
    "SearxngSearch",
    "TavilySearch",
    "WebSearch",
    "build_web_search",
]

MAX_RESULTS = 20
"""Brave's and Tavily's own ceiling for one request."""


@dataclass(frozen=True, slots=True)
class SearchResult:
    title: str
    url: str
    snippet: str
    """Plain text: the provider's markup is stripped."""


class SearchError(Exception):
    """A search that failed; `message` names the provider and the failure, never the key."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WebSearch(Protocol):
    name: str
    """`searxng`, `brave` or `tavily`."""

    async def search(
        self, query: str, *, domains: Sequence[str] = (), max_results: int = 5
    ) -> list[SearchResult]: ...

    async def aclose(self) -> None: ...


def build_web_search(settings: WebSearchSettings) -> WebSearch | None:
    """The configured backend, or None for `none`; raises `ValueError` when misconfigured."""
    if settings.provider == "none":
        return None
    if settings.provider == "searxng":
        if not settings.base_url:
            raise ValueError(
                "web_search provider 'searxng' needs base_url, the address of the SearXNG "
                "instance (KAIWA_WEB_SEARCH__BASE_URL)"
            )
        return SearxngSearch(base_url=settings.base_url, timeout=settings.timeout)
    if not settings.api_key:
        raise ValueError(
            f"web_search provider {settings.provider!r} needs api_key (KAIWA_WEB_SEARCH__API_KEY)"
        )
    if settings.provider == "brave":
        return BraveSearch(
            api_key=settings.api_key, base_url=settings.base_url, timeout=settings.timeout
        )
    return TavilySearch(
        api_key=settings.api_key, base_url=settings.base_url, timeout=settings.timeout
    )


class _Item(BaseModel):
    title: str | None = None
    url: str | None = None
    content: str | None = None
    description: str | None = None


class _Results(BaseModel):
    results: list[_Item] = []


class _BraveAnswer(BaseModel):
    web: _Results = _Results()


_STATUS_HINTS = {
    401: "API key rejected",
    402: "payment required: the plan's quota is used up",
    403: "access denied",
    404: "wrong base_url?",
    422: "request rejected",
    429: "rate limited",
}


class _HTTPSearch(ABC):
    """The I/O every provider shares: send one request, map failures, check the JSON's shape."""

    name = "search"

    def __init__(self, *, base_url: str, timeout: float, headers: dict[str, str]) -> None:
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers={"Accept": "application/json", **headers},
            timeout=httpx.Timeout(timeout),
        )

    async def search(
        self, query: str, *, domains: Sequence[str] = (), max_results: int = 5
    ) -> list[SearchResult]:
        """At most `max_results` (1-20) results for `query`, within `domains` if any."""
        query = query.strip()
        if not query:
            raise SearchError(f"{self.name} search needs a query")
        wanted = _domains(domains)
        count = max(1, min(max_results, MAX_RESULTS))
        request = self._request(query, wanted, count)
        items = await self._send(request)
        results = [
            SearchResult(
                title=_plain(item.title or ""),
                url=item.url,
                snippet=_plain(item.content or item.description or ""),
            )
            for item in items
            if item.url and _within(item.url, wanted)
        ]
        return results[:count]

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    async def aclose(self) -> None:
        await self._client.aclose()

    @abstractmethod
    def _request(self, query: str, domains: list[str], count: int) -> httpx.Request:
        """The provider's own search request."""

    def _items(self, payload: bytes) -> list[_Item]:
        return _Results.model_validate_json(payload).results

    async def _send(self, request: httpx.Request) -> list[_Item]:
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.send(request)
        except (TimeoutError, httpx.TimeoutException):
            raise SearchError(f"{self.name} search timed out after {self._timeout:g} s") from None
        except httpx.HTTPError as exc:
            host = request.url.host
            raise SearchError(
                f"{self.name} search failed: could not reach {host} ({type(exc).__name__})"
            ) from None
        status = response.status_code
        if status != 200:
            hint = self._hint(status)
            problem = f"HTTP {status} ({hint})" if hint else f"HTTP {status}"
            raise SearchError(f"{self.name} search failed: {problem}")
        try:
            return self._items(response.content)
        except ValidationError as exc:
            not_json = any(error["type"] == "json_invalid" for error in exc.errors())
            what = "a body that is not JSON" if not_json else "JSON of an unexpected shape"
            raise SearchError(f"{self.name} search returned {what}") from None

    def _hint(self, status: int) -> str:
        return _STATUS_HINTS.get(status) or ("server error" if status >= 500 else "")


class SearxngSearch(_HTTPSearch):
    """A SearXNG instance's JSON API (`json` must be among `search.formats` in settings.yml)."""

    name = "searxng"

    def __init__(self, *, base_url: str, timeout: float = 10.0) -> None:
        super().__init__(base_url=base_url, timeout=timeout, headers={})

    def _request(self, query: str, domains: list[str], count: int) -> httpx.Request:
        params = {"q": _with_sites(query, domains), "format": "json"}
        return self._client.build_request("GET", "search", params=params)

    def _hint(self, status: int) -> str:
        if status == 403:
            return "is the json format enabled in the instance's settings.yml?"
        return super()._hint(status)


class BraveSearch(_HTTPSearch):
    """The Brave Search API's web search."""

    name = "brave"
    DEFAULT_BASE_URL = "https://api.search.brave.com"

    def __init__(self, *, api_key: str, base_url: str | None = None, timeout: float = 10.0):
        super().__init__(
            base_url=base_url or self.DEFAULT_BASE_URL,
            timeout=timeout,
            headers={"X-Subscription-Token": api_key},
        )

    def _request(self, query: str, domains: list[str], count: int) -> httpx.Request:
        params = {"q": _with_sites(query, domains), "count": str(count)}
        return self._client.build_request("GET", "res/v1/web/search", params=params)

    def _items(self, payload: bytes) -> list[_Item]:
        return _BraveAnswer.model_validate_json(payload).web.results


class TavilySearch(_HTTPSearch):
    """Tavily's search API."""

    name = "tavily"
    DEFAULT_BASE_URL = "https://api.tavily.com"

    def __init__(self, *, api_key: str, base_url: str | None = None, timeout: float = 10.0):
        super().__init__(
            base_url=base_url or self.DEFAULT_BASE_URL,
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}"},
        )

    def _request(self, query: str, domains: list[str], count: int) -> httpx.Request:
        body: dict[str, object] = {
            "query": query,
            "max_results": count,
            "search_depth": "basic",
            "topic": "general",
            "include_answer": False,
            "include_raw_content": False,
        }
        if domains:
            body["include_domains"] = domains
        return self._client.build_request("POST", "search", json=body)


_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def _plain(markup: str) -> str:
    return _SPACE.sub(" ", html.unescape(_TAG.sub("", markup))).strip()


def _domains(domains: Sequence[str]) -> list[str]:
    """Bare lower-case host names: `https://Docs.Python.org/3/` becomes `docs.python.org`."""
    hosts: list[str] = []
    for domain in domains:
        value = domain.strip().lower()
        if "://" in value:
            value = value.split("://", 1)[1]
        value = value.split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0].strip(".")
        if value and value not in hosts:
            hosts.append(value)
    return hosts


def _with_sites(query: str, domains: list[str]) -> str:
    if not domains:
        return query
    return f"{query} " + " OR ".join(f"site:{domain}" for domain in domains)


def _within(url: str, domains: list[str]) -> bool:
    if not domains:
        return True
    try:
        host = httpx.URL(url).host.lower()
    except httpx.InvalidURL:
        return False
    return any(host == domain or host.endswith("." + domain) for domain in domains)
