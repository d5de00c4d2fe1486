"""`lookup`: search this chat's earlier messages and its attached files."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from kaiwa.files.lookup import LookupHit
from kaiwa.llm import ToolSpec
from kaiwa.llm.text import Language, Passage, render_passages
from kaiwa.runtime.tools.base import Tool, ToolContext, ToolOutput, pick, text_argument

LIMIT = 5


Lookup = Callable[[ToolContext, str, int], Awaitable[Sequence[LookupHit]]]
"""`(context, query, limit)` → the best passages of the chat's history and files."""


class LookupTool(Tool):
    step_type = "consultant_lookup"
    tool_name = "lookup"

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup

    def spec(self) -> ToolSpec:
        return ToolSpec(
            name=self.tool_name,
            description=(
                "Search this conversation's earlier messages and the files the user attached "
                "(including this message's attachments)."
            ),
            parameters={
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What to look for"}},
                "required": ["query"],
            },
        )

    def prepare(self, arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        return {"query": text_argument(arguments, "query")}

    def describe(self, args: dict[str, Any], language: Language) -> str:
        query = args.get("query") or ""
        if not query:
            return pick(
                language,
                en="Looking through this chat and its files",
                ja="この会話と添付ファイルから探しています",
            )
        return pick(
            language,
            en=f"Looking through this chat and its files for “{query}”",
            ja=f"この会話と添付ファイルから探しています:「{query}」",
        )

    async def run(self, args: dict[str, Any], context: ToolContext) -> ToolOutput:
        hits = await self._lookup(context, args["query"], LIMIT)
        results = [
            {
                "source": hit.source,
                "id": hit.id,
                "title": hit.title,
                "snippet": hit.snippet,
                "score": round(hit.score, 4),
            }
            for hit in hits
        ]
        data = {"query": args["query"], "results": results}
        if not hits:
            return ToolOutput(data=data, text="Nothing in this chat or its files matches.")
        text = render_passages(
            Passage(title=hit.title, text=hit.text, ref=f"{hit.source}:{hit.id}") for hit in hits
        )
        return ToolOutput(data=data, text=text)
