"""The backends of the web tools: `fetch_web_content` (`Fetcher`) and `web_search`.

    fetcher = Fetcher(allow_private="", max_bytes=5 * 1024 * 1024, timeout=15.0)
    page = await fetcher.fetch("https://example.com/")  # FetchedPage, or FetchError

    search = build_web_search(settings.web_search)  # WebSearch | None
    results = await search.search("query", domains=["example.com"])  # or SearchError

Modules: `addresses` (which addresses may be reached, pure), `transport` (an httpx transport that
connects only to checked addresses), `extract` (charset, main text, PDF text), `fetch`, `search`,
`redact` (a URL fit to show back, its credentials masked).
"""

from kaiwa.net.fetch import FetchedPage, Fetcher, FetchError
from kaiwa.net.search import SearchError, SearchResult, WebSearch, build_web_search

__all__ = [
    "FetchError",
    "FetchedPage",
    "Fetcher",
    "SearchError",
    "SearchResult",
    "WebSearch",
    "build_web_search",
]
