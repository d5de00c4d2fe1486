"""`search_web`: search the web through the configured provider."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from kaiwa.llm import ToolSpec
from kaiwa.llm.text import Language, Passage, render_passages
from kaiwa.runtime.tools.base import (
    Tool,
    ToolContext,
    ToolFailure,
    ToolOutput,
    pick,
    text_argument,
)


class SearchResult(Protocol):
    @property
    def title(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def snippet(self) -> str: ...


class WebSearch(Protocol):
    @property
    def name(self) -> str: ...

    async def search(
        self, query: str, *, domains: Sequence[str] = (), max_results: int = 5
    ) -> Sequence[SearchResult]: ...


class SearchWebTool(Tool):
    step_type = "consultant_search_web"
    tool_name = "search_web"

    def __init__(self, search: WebSearch, *, domains: Sequence[str] = (), max_results: int = 5):
        self._search = search
        self._domains = list(domains)
        self._max = max_results

    def spec(self) -> ToolSpec:
        where = f" (only {', '.join(self._domains)})" if self._domains else ""
        return ToolSpec(
            name=self.tool_name,
            description=f"Search the web{where} for current information; returns result "
            "titles, URLs and snippets.",
            parameters={
                "type": "object",
                "properties": {"query": {"type": "string", "description": "The search query"}},
                "required": ["query"],
            },
        )

    def prepare(self, arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        return {"query": text_argument(arguments, "query", limit=400)}

    def describe(self, args: dict[str, Any], language: Language) -> str:
        query = args.get("query") or ""
        if not query:
            return pick(language, en="Searching the web", ja="ウェブを検索しています")
        return pick(
            language,
            en=f"Searching the web for “{query}”",
            ja=f"ウェブを検索しています:「{query}」",
        )

    async def run(self, args: dict[str, Any], context: ToolContext) -> ToolOutput:
        try:
            results = await self._search.search(
                args["query"], domains=self._domains, max_results=self._max
            )
        except Exception as exc:
            raise ToolFailure(getattr(exc, "message", None) or str(exc)) from None
        data = {
            "query": args["query"],
            "provider": self._search.name,
            "results": [{"title": r.title, "url": r.url, "snippet": r.snippet} for r in results],
        }
        if not results:
            return ToolOutput(data=data, text="The web search found nothing.")
        text = render_passages(Passage(title=r.title, text=r.snippet, ref=r.url) for r in results)
        return ToolOutput(data=data, text=text)
