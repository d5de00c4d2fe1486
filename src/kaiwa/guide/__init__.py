"""The kaiwa guide: a knowledge base about kaiwa itself, and the agent that answers from it.

On its first run, `kaiwa serve` creates it beside the demo agent, so the offline
built-in model shows real reasoning steps (retrieval, lookup, fetch) and answers with sources.
Its pages are indexed by `index` jobs like any uploaded document: the server answers at once,
and the guide within seconds (with the local dense embedder, the slowest part of a first start).

Every page exists in English and in Japanese (`<topic>.en.md`, `<topic>.ja.md`), and all are
indexed: without a dense embedder (the default install) a question only finds pages sharing its
words, so each language needs its own page, and the built-in model quotes the pages in the
question's language.
"""

from __future__ import annotations

from importlib.resources import files

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.config import Settings
from kaiwa.files import open_blob_store
from kaiwa.runtime.indexing import INDEX_JOB
from kaiwa.store import agents, jobs, knowledge
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
    """The guide's knowledge base and its published agent, created if missing, its pages
    queued for indexing (the server's job worker indexes them)."""
    blobs = open_blob_store(settings)
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
                    storage_key=await blobs.save(data),
                )
                # Each page's first heading becomes its title.
                payload = {"document_id": document.id, "title": None}
                await jobs.enqueue(session, INDEX_JOB, payload, key=document.id)
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
    return agent
