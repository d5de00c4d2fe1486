"""`retrieve_context_objs`: search the agent's knowledge bases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kaiwa.knowledge.search import KnowledgeSearch
from kaiwa.llm import ToolSpec
from kaiwa.llm.text import Language, Passage, render_passages
from kaiwa.runtime.tools.base import Tool, ToolContext, ToolOutput, pick, text_argument

TOP_K = 5


class RetrieveTool(Tool):
    step_type = "consultant_retrieve_context_source"
    tool_name = "retrieve_context_objs"

    def __init__(self, knowledge: KnowledgeSearch, knowledge_base_ids: Sequence[str]) -> None:
        self._knowledge = knowledge
        self._ids = list(knowledge_base_ids)

    def spec(self) -> ToolSpec:
        return ToolSpec(
            name=self.tool_name,
            description=(
                "Search the knowledge base of this assistant for passages that answer a "
                "question. Use it before answering anything the knowledge base may cover."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "description": "What to look for, in the user's language",
                    }
                },
                "required": ["query"],
            },
        )

    def prepare(self, arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        return {"query": text_argument(arguments, "query")}

    def describe(self, args: dict[str, Any], language: Language) -> str:
        query = args.get("query") or ""
        if not query:
            return pick(
                language, en="Searching the knowledge base", ja="ナレッジベースを検索しています"
            )
        return pick(
            language,
            en=f"Searching the knowledge base for “{query}”",
            ja=f"ナレッジベースを検索しています:「{query}」",
        )

    async def run(self, args: dict[str, Any], context: ToolContext) -> ToolOutput:
        hits = await self._knowledge.search(
            context.workspace_id, self._ids, args["query"], top_k=TOP_K
        )
        sources = [
            {
                "document_id": hit.document_id,
                "title": hit.title,
                "chunk_id": hit.chunk_id,
                "snippet": hit.snippet,
                "score": round(hit.score, 4),
            }
            for hit in hits
        ]
        if not hits:
            return ToolOutput(
                data={"query": args["query"], "sources": []},
                text="No passage of the knowledge base matches the query.",
            )
        text = render_passages(
            Passage(title=hit.title, text=hit.text, ref=f"kb:{hit.document_id}#{hit.chunk_id}")
            for hit in hits
        )
        return ToolOutput(data={"query": args["query"], "sources": sources}, text=text)
