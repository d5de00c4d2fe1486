"""Server-wide secrets, generated once and shared by every replica through the database."""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.store.db import now, transaction
from kaiwa.store.models import ServerSecret


async def get_or_create(sessions: async_sessionmaker[AsyncSession], name: str) -> str:
    """The secret called `name`; the first replica to ask creates it, the others read it."""
    async with transaction(sessions) as session:
        existing = await session.get(ServerSecret, name)
        if existing is not None:
            return existing.value
    try:
        async with transaction(sessions) as session:
            value = secrets.token_urlsafe(48)
            session.add(ServerSecret(name=name, value=value, created_at=now()))
        return value
    except IntegrityError:
        # Another replica created it between our read and our write: theirs wins.
        async with transaction(sessions) as session:
            winner = await session.get(ServerSecret, name)
            assert winner is not None
            return winner.value
