"""The first run: a workspace and a published demo agent on the built-in model."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store import agents, workspaces
from kaiwa.store.models import Agent, Workspace

DEMO_AGENT_NAME = "kaiwa demo"
DEMO_SYSTEM_PROMPT = "You are a helpful assistant. Answer in the language of the user."


async def ensure_demo(session: AsyncSession) -> tuple[Workspace, Agent]:
    """The default workspace and its demo agent, created and published if missing."""
    workspace = await workspaces.default_workspace(session)
    assert workspace is not None
    agent = await session.scalar(
        select(Agent)
        .where(
            Agent.workspace_id == workspace.id,
            Agent.name == DEMO_AGENT_NAME,
            Agent.deleted_at.is_(None),
        )
        .limit(1)
    )
    if agent is None:
        agent = await agents.create_agent(
            session,
            workspace.id,
            name=DEMO_AGENT_NAME,
            description="Answers offline with kaiwa's built-in model.",
            system_prompt=DEMO_SYSTEM_PROMPT,
            llm_model="builtin/extractive",
            suggested_questions=["営業時間は?", "What can you do?"],
        )
    if agent.published_version is None:
        await agents.publish(session, agent)
    return workspace, agent
