"""The kaiwa guide: a knowledge base about kaiwa itself, and the agent that answers from it.

On its first run, `kaiwa serve` creates it beside the demo agent, so the offline
built-in model shows real reasoning steps (retrieval, lookup, fetch) and answers with sources.
"""

from __future__ import annotations

from importlib.resources import files

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.config import Settings
from kaiwa.knowledge.embed import build_embedder
from kaiwa.knowledge.index import Indexer, Upload
from kaiwa.store import agents, knowledge
from kaiwa.store.db import transaction
from kaiwa.store.models import Agent

GUIDE_AGENT_NAME = "kaiwa guide"
GUIDE_SYSTEM_PROMPT = (
    "You answer questions about kaiwa from its guide, in the language of the user, and cite "
    "the guide's sections."
)


async def ensure_guide(
    sessions: async_sessionmaker[AsyncSession], workspace_id: str, settings: Settings
) -> Agent:
    """The guide's knowledge base and its published agent, created (and indexed) if missing."""
    async with transaction(sessions) as session:
        agent = await session.scalar(
            select(Agent)
            .where(
                Agent.workspace_id == workspace_id,
                Agent.name == GUIDE_AGENT_NAME,
                Agent.deleted_at.is_(None),
            )
            .limit(1)
        )
        if agent is not None:
            return agent
        base = await knowledge.create_knowledge_base(
            session, workspace_id, name="kaiwa guide", description="What kaiwa is and how to use it"
        )
        uploads = []
        for page in sorted(files(__name__).iterdir(), key=lambda page: page.name):
            if page.name.endswith(".md"):
                data = page.read_bytes()
                document = await knowledge.add_document(
                    session,
                    base,
                    title=page.name,
                    source=page.name,
                    content_type="text/markdown",
                    size=len(data),
                )
                uploads.append((document.id, Upload(data, page.name, "text/markdown")))
        agent = await agents.create_agent(
            session,
            workspace_id,
            name=GUIDE_AGENT_NAME,
            description="Answers questions about kaiwa from its guide, offline, citing sources.",
            system_prompt=GUIDE_SYSTEM_PROMPT,
            llm_model="builtin/extractive",
            unified_tools=[
                {"type": "knowledge_base", "knowledge_base_ids": [base.id]},
                {"type": "lookup"},
                {"type": "fetch_web_content"},
            ],
            suggested_questions=[
                "kaiwa とは何ですか?",
                "モデルの設定方法は?",
                "Which tools can an agent use?",
            ],
        )
        await agents.publish(session, agent)
    embedder = build_embedder(settings.embeddings)
    indexer = Indexer(sessions, embedder)
    try:
        for document_id, upload in uploads:
            # Each page's first heading becomes its title.
            indexer.start(document_id, upload, title=None)
        await indexer.join()
    finally:
        await indexer.aclose()
        if embedder is not None:
            await embedder.aclose()
    return agent
