"""Idempotency keys: a request sent with an `Idempotency-Key` header records what it started
(a response, a batch) in the same transaction that starts it, so a repeat finds it.

    earlier = await find(session, workspace_id, key, since=cutoff)
    await claim(session, Claim(key, fingerprint, ttl), workspace_id, response_id=…, chat_id=…)
    removed = await purge(session, before=cutoff)

Two requests with one key that race both pass `find`; the primary key lets one `claim`, and the
other's raises `KeyTaken` (rolling back everything its transaction stored), so it can answer
with what the first started.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store.db import now, utc
from kaiwa.store.models import IdempotencyKey

__all__ = ["Claim", "KeyTaken", "claim", "find", "purge"]


@dataclass(frozen=True, slots=True)
class Claim:
    """A request's key, the digest of what it asks (operation, target and body), and how long
    (seconds) the key stays bound to it."""

    key: str
    fingerprint: str
    ttl: float


class KeyTaken(Exception):
    """Another request with the same key started first."""


async def find(
    session: AsyncSession, workspace_id: str, key: str, *, since: datetime
) -> IdempotencyKey | None:
    """The record of the key, unless it is older than `since` (then it counts as unused)."""
    found = await session.get(IdempotencyKey, (workspace_id, key))
    if found is None or utc(found.created_at) < since:
        return None
    return found


async def claim(
    session: AsyncSession,
    request: Claim,
    workspace_id: str,
    *,
    response_id: str | None = None,
    chat_id: int | None = None,
    batch_id: str | None = None,
) -> None:
    """Record the key in the caller's transaction; raises `KeyTaken` when it is in use (that
    transaction must then be rolled back). A record older than its time to live is replaced."""
    since = now() - timedelta(seconds=request.ttl)
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.workspace_id == workspace_id,
            IdempotencyKey.key == request.key,
            IdempotencyKey.created_at < since,
        )
    )
    try:
        await session.execute(
            insert(IdempotencyKey).values(
                workspace_id=workspace_id,
                key=request.key,
                fingerprint=request.fingerprint,
                response_id=response_id,
                chat_id=chat_id,
                batch_id=batch_id,
                created_at=now(),
            )
        )
    except IntegrityError:
        raise KeyTaken(request.key) from None


async def purge(session: AsyncSession, *, before: datetime) -> int:
    """Delete the records older than `before`; how many."""
    result = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < before))
    return int(getattr(result, "rowcount", 0) or 0)
