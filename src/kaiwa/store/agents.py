"""Agents and their published versions. Chats always run the published snapshot."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store.db import Db, new_id, now, paginate
from kaiwa.store.models import Agent, AgentVersion

#: The fields a version snapshots; an update may change any of them.
AGENT_FIELDS = (
    "name",
    "description",
    "system_prompt",
    "llm_model",
    "unified_tools",
    "suggested_questions",
    "meta",
)


async def create_agent(session: AsyncSession, workspace_id: str, **fields: Any) -> Agent:
    stamp = now()
    agent = Agent(
        id=new_id(),
        workspace_id=workspace_id,
        description="",
        system_prompt="",
        unified_tools=[],
        suggested_questions=[],
        meta={},
        published_version=None,
        created_at=stamp,
        updated_at=stamp,
        deleted_at=None,
    )
    for name, value in fields.items():
        setattr(agent, name, value)
    session.add(agent)
    await session.flush()
    return agent


async def get_agent(session: AsyncSession, workspace_id: str, agent_id: str) -> Agent | None:
    agent = await session.get(Agent, agent_id)
    if agent is None or agent.workspace_id != workspace_id or agent.deleted_at is not None:
        return None
    return agent


class AgentRef(NamedTuple):
    """An agent as a turn needs it: which version its chats run."""

    id: str
    published_version: int | None


_LIVE = select(Agent.id, Agent.published_version).where(
    Agent.id == bindparam("agent_id"),
    Agent.workspace_id == bindparam("workspace_id"),
    Agent.deleted_at.is_(None),
)


async def live_agent(session: Db, workspace_id: str, agent_id: str) -> AgentRef | None:
    """`get_agent` for a turn: the agent's id and published version number, not the entity."""
    row = (
        await session.execute(_LIVE, {"agent_id": agent_id, "workspace_id": workspace_id})
    ).first()
    return None if row is None else AgentRef(*row)


async def list_agents(
    session: AsyncSession, workspace_id: str, *, limit: int, offset: int
) -> tuple[list[Agent], int]:
    query = (
        select(Agent)
        .where(Agent.workspace_id == workspace_id, Agent.deleted_at.is_(None))
        .order_by(Agent.created_at, Agent.id)
    )
    return await paginate(session, query, limit=limit, offset=offset)


async def list_published(session: AsyncSession, workspace_id: str) -> list[Agent]:
    query = (
        select(Agent)
        .where(
            Agent.workspace_id == workspace_id,
            Agent.deleted_at.is_(None),
            Agent.published_version.is_not(None),
        )
        .order_by(Agent.created_at, Agent.id)
    )
    return list(await session.scalars(query))


def update_agent(agent: Agent, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.updated_at = now()


def delete_agent(agent: Agent) -> None:
    # Soft delete: chats and messages keep pointing at it, and it answers 404 from now on.
    agent.deleted_at = now()


async def publish(session: AsyncSession, agent: Agent) -> AgentVersion:
    """Snapshot the agent as its next version and make that version the one chats run."""
    latest = await session.scalar(
        select(func.max(AgentVersion.version)).where(AgentVersion.agent_id == agent.id)
    )
    version = AgentVersion(
        agent_id=agent.id,
        version=(latest or 0) + 1,
        snapshot={name: getattr(agent, name) for name in AGENT_FIELDS},
        created_at=now(),
    )
    session.add(version)
    agent.published_version = version.version
    agent.updated_at = now()
    await session.flush()
    return version


async def published_version(session: AsyncSession, agent: Agent | AgentRef) -> AgentVersion | None:
    """The version chats of `agent` run. A version never changes once published (publishing
    makes a new one), so each is read once per process and kept (a few thousand at most); the
    caller must not modify it."""
    number = agent.published_version
    if number is None:
        return None
    key = (agent.id, number)
    version = _versions.get(key)
    if version is not None:
        _versions.move_to_end(key)
        return version
    query = select(AgentVersion).where(
        AgentVersion.agent_id == agent.id, AgentVersion.version == number
    )
    loaded = await session.scalar(query)
    if loaded is None:
        return None
    # A copy that belongs to no session: a rollback of this one cannot expire it.
    version = AgentVersion(
        id=loaded.id,
        agent_id=loaded.agent_id,
        version=loaded.version,
        snapshot=loaded.snapshot,
        created_at=loaded.created_at,
    )
    _versions[key] = version
    if len(_versions) > _VERSIONS_KEPT:
        _versions.popitem(last=False)
    return version


# (agent id, version number) → the version, least recently used first. Agent ids are UUIDs,
# so one process serving several databases (tests) cannot mix them up.
_versions: OrderedDict[tuple[str, int], AgentVersion] = OrderedDict()
_VERSIONS_KEPT = 4096
