"""The public surface of `kaiwa.net` is pinned: adding or removing a name is a decision."""

from __future__ import annotations

import kaiwa.net
import kaiwa.net.fetch
import kaiwa.net.search


def test_package_all_is_pinned() -> None:
    assert sorted(kaiwa.net.__all__) == [
        "FetchError",
        "FetchedPage",
        "Fetcher",
        "SearchError",
        "SearchResult",
        "WebSearch",
        "build_web_search",
    ]
    for name in kaiwa.net.__all__:
        assert getattr(kaiwa.net, name) is not None


def test_module_all_is_pinned() -> None:
    assert sorted(kaiwa.net.fetch.__all__) == [
        "FetchError",
        "FetchedPage",
        "Fetcher",
        "MAX_REDIRECTS",
        "USER_AGENT",
    ]
    assert sorted(kaiwa.net.search.__all__) == [
        "BraveSearch",
        "SearchError",
        "SearchResult",
        "SearxngSearch",
        "TavilySearch",
        "WebSearch",
        "build_web_search",
    ]
