"""`fetch_web_content`: read a web page (or PDF) and keep its main text."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

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

MODEL_CHARS = 12_000
"""How much of a page the model reads."""
EXCERPT_CHARS = 500


class Page(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def title(self) -> str | None: ...
    @property
    def text(self) -> str: ...
    @property
    def content_type(self) -> str: ...


class Fetcher(Protocol):
    async def fetch(self, url: str) -> Page: ...


class FetchTool(Tool):
    step_type = "consultant_fetch_web_content"
    tool_name = "fetch_web_content"

    def __init__(self, fetcher: Fetcher) -> None:
        self._fetcher = fetcher

    def spec(self) -> ToolSpec:
        return ToolSpec(
            name=self.tool_name,
            description="Fetch a web page or PDF by its URL and return its main text.",
            parameters={
                "type": "object",
                "properties": {"url": {"type": "string", "description": "An http(s) URL"}},
                "required": ["url"],
            },
        )

    def prepare(self, arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        url = text_argument(arguments, "url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ToolFailure(f"argument 'url' must be an http or https URL, got {url!r}")
        return {"url": url}

    def describe(self, args: dict[str, Any], language: Language) -> str:
        url = args.get("url") or ""
        if not url:
            return pick(language, en="Reading a web page", ja="ウェブページを読み込んでいます")
        return pick(language, en=f"Reading {url}", ja=f"{url} を読み込んでいます")

    async def run(self, args: dict[str, Any], context: ToolContext) -> ToolOutput:
        try:
            page = await self._fetcher.fetch(args["url"])
        except Exception as exc:
            raise ToolFailure(getattr(exc, "message", None) or str(exc)) from None
        text = page.text.strip()
        data = {
            "url": page.url,
            "title": page.title,
            "content_type": page.content_type,
            "length": len(text),
            "excerpt": text[:EXCERPT_CHARS],
        }
        if not text:
            return ToolOutput(data=data, text=f"The page at {page.url} has no readable text.")
        passage = Passage(title=page.title or page.url, text=text[:MODEL_CHARS], ref=page.url)
        return ToolOutput(data=data, text=render_passages([passage]))
