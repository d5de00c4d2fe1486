"""Fakes of the SearXNG, Brave Search and Tavily APIs, on one real loopback server.

Each speaks its provider's protocol under its own prefix (`fake.base_url_for("brave")`):

- `GET /searxng/search?q=...&format=json` answers `{"results": [{title, url, content}]}`, and
  403 unless `format=json`, as a SearXNG instance without the JSON format enabled does.
- `GET /brave/res/v1/web/search?q=...&count=N` answers `{"web": {"results": [{title, url,
  description}]}}`; the key must be in `X-Subscription-Token` (`BRAVE_KEY`).
- `POST /tavily/search` with a JSON body `{query, max_results, include_domains}` answers
  `{"results": [{title, url, content, score}]}`; the key must be `Authorization: Bearer`
  (`TAVILY_KEY`).

A rejected key gets a 401 whose body quotes the key back, as some APIs do, so tests can check it
never reaches an error message. `site:` operators in the query (SearXNG, Brave) and
`include_domains` (Tavily) filter the hits, unless `honour_sites` is off (engines that ignore the
operators). Scripted faults (`Status`, `NotJSON`, `Stall`) are taken from a queue, one per request;
every request is recorded in `queries`. Ask for the `fake_search` fixture.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.fakes.web_server import LoopbackServer

BRAVE_KEY = "brave-secret-key-7f3a9c"
TAVILY_KEY = "tvly-secret-key-91c2d8"

Provider = Literal["searxng", "brave", "tavily"]


@dataclass(frozen=True)
class Hit:
    title: str
    url: str
    snippet: str
    """May hold markup, as the real APIs' snippets do."""


DEFAULT_HITS = (
    Hit(
        "<strong>FastAPI</strong> lifespan events",
        "https://fastapi.tiangolo.com/advanced/events/",
        "Use the <strong>lifespan</strong> parameter &amp; an async context manager.",
    ),
    Hit(
        "Settings - Uvicorn",
        "https://www.uvicorn.org/settings/",
        "Graceful shutdown: <em>--timeout-graceful-shutdown</em> sets the seconds to wait.",
    ),
    Hit(
        "How do I run code on FastAPI startup?",
        "https://stackoverflow.com/questions/12345/fastapi-startup",
        "Answers   mentioning   on_event and lifespan.",
    ),
)


@dataclass(frozen=True)
class Status:
    code: int


@dataclass(frozen=True)
class NotJSON:
    body: str = "<html><body>502 Bad Gateway</body></html>"


@dataclass(frozen=True)
class Stall:
    seconds: float = 5.0


Fault = Status | NotJSON | Stall


@dataclass
class RecordedQuery:
    provider: Provider
    query: str
    params: dict[str, str]
    body: dict[str, Any] | None
    headers: dict[str, str] = field(repr=False)


class FakeSearch(LoopbackServer):
    def __init__(self, *, port: int = 0) -> None:
        self.hits: list[Hit] = list(DEFAULT_HITS)
        self.honour_sites = True
        self.queries: list[RecordedQuery] = []
        self._faults: deque[Fault] = deque()
        app = Starlette(
            routes=[
                Route("/searxng/search", self._searxng),
                Route("/brave/res/v1/web/search", self._brave),
                Route("/tavily/search", self._tavily, methods=["POST"]),
            ]
        )
        super().__init__(app, name="fake-search", port=port)

    def base_url_for(self, provider: Provider) -> str:
        return f"{self.base_url}/{provider}"

    def enqueue(self, *faults: Fault) -> None:
        self._faults.extend(faults)

    def reset(self) -> None:
        self.hits = list(DEFAULT_HITS)
        self.honour_sites = True
        self.queries.clear()
        self._faults.clear()

    async def _searxng(self, request: Request) -> Response:
        params = dict(request.query_params)
        self._record("searxng", params.get("q", ""), params, None, request)
        if (fault := await self._fault()) is not None:
            return fault
        if params.get("format") != "json":
            return Response("Forbidden", status_code=403)
        hits = self._matching(params.get("q", ""), ())
        return JSONResponse(
            {
                "query": params.get("q", ""),
                "number_of_results": len(hits),
                "results": [
                    {"title": h.title, "url": h.url, "content": h.snippet, "engine": "fake"}
                    for h in hits
                ],
            }
        )

    async def _brave(self, request: Request) -> Response:
        params = dict(request.query_params)
        self._record("brave", params.get("q", ""), params, None, request)
        token = request.headers.get("x-subscription-token", "")
        if token != BRAVE_KEY:
            return JSONResponse(
                {
                    "type": "ErrorResponse",
                    "error": {
                        "status": 401,
                        "code": "SUBSCRIPTION_TOKEN_INVALID",
                        "detail": f"The provided subscription token {token!r} is invalid.",
                    },
                },
                status_code=401,
            )
        if (fault := await self._fault()) is not None:
            return fault
        count = int(params.get("count", "20"))
        hits = self._matching(params.get("q", ""), ())[:count]
        results = [
            {"type": "search_result", "title": h.title, "url": h.url, "description": h.snippet}
            for h in hits
        ]
        return JSONResponse({"type": "search", "web": {"type": "search", "results": results}})

    async def _tavily(self, request: Request) -> Response:
        body = await request.json()
        self._record("tavily", str(body.get("query", "")), {}, body, request)
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        if key != TAVILY_KEY:
            message = f"Unauthorized: missing or invalid API key {key!r}."
            return JSONResponse({"detail": {"error": message}}, status_code=401)
        if (fault := await self._fault()) is not None:
            return fault
        hits = self._matching(str(body["query"]), body.get("include_domains") or ())
        hits = hits[: int(body.get("max_results", 5))]
        results = [
            {
                "title": h.title,
                "url": h.url,
                "content": h.snippet,
                "score": 0.9,
                "raw_content": None,
            }
            for h in hits
        ]
        return JSONResponse(
            {"query": body["query"], "results": results, "response_time": 0.01, "images": []}
        )

    def _record(
        self,
        provider: Provider,
        query: str,
        params: dict[str, str],
        body: dict[str, Any] | None,
        request: Request,
    ) -> None:
        self.queries.append(RecordedQuery(provider, query, params, body, dict(request.headers)))

    async def _fault(self) -> Response | None:
        if not self._faults:
            return None
        fault = self._faults.popleft()
        if isinstance(fault, Status):
            return JSONResponse({"error": "fake failure"}, status_code=fault.code)
        if isinstance(fault, NotJSON):
            return Response(fault.body, media_type="application/json")
        await asyncio.sleep(fault.seconds)
        return JSONResponse({"results": []})

    def _matching(self, query: str, include_domains: Sequence[str]) -> list[Hit]:
        domains = list(include_domains) or re.findall(r"site:(\S+)", query)
        if not domains or not self.honour_sites:
            return list(self.hits)
        return [hit for hit in self.hits if _within(hit.url, domains)]


def _within(url: str, domains: Sequence[str]) -> bool:
    host = urlsplit(url).hostname or ""
    return any(host == domain or host.endswith("." + domain) for domain in domains)


@pytest.fixture(scope="session")
def _fake_search_server() -> Iterator[FakeSearch]:
    with FakeSearch() as fake:
        yield fake


@pytest.fixture
def fake_search(_fake_search_server: FakeSearch) -> FakeSearch:
    """One server for the session, reset (hits, faults, recorded queries) for each test."""
    _fake_search_server.reset()
    return _fake_search_server
