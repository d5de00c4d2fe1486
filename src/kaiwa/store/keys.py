"""API keys: random, shown once, stored as a SHA-256 hash with a short visible prefix.

Keys carry 256 bits of randomness, so a fast hash is enough: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store.db import new_id, now, utc
from kaiwa.store.models import ApiKey

Scope = Literal["management", "chat"]
KEY_PREFIX = "kw_"
PREFIX_LENGTH = 11


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


async def create_key(
    session: AsyncSession,
    workspace_id: str,
    *,
    name: str,
    scope: Scope = "management",
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Returns the stored key and its plaintext, which exists only here."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id(),
        workspace_id=workspace_id,
        name=name,
        prefix=plaintext[:PREFIX_LENGTH],
        key_hash=hash_key(plaintext),
        scope=scope,
        created_at=now(),
        expires_at=expires_at,
        revoked_at=None,
    )
    session.add(key)
    await session.flush()
    return key, plaintext


async def authenticate(session: AsyncSession, plaintext: str) -> ApiKey | None:
    """The live key with this plaintext, or None when unknown, revoked or expired."""
    key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext)))
    if key is None or key.revoked_at is not None:
        return None
    if key.expires_at is not None and utc(key.expires_at) <= now():
        return None
    return key


async def list_keys(session: AsyncSession, workspace_id: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at)
    if workspace_id is not None:
        query = query.where(ApiKey.workspace_id == workspace_id)
    return list(await session.scalars(query))


async def revoke_key(
    session: AsyncSession, id_or_prefix: str, workspace_id: str | None = None
) -> ApiKey | None:
    """Revoke by id or visible prefix (of a key of `workspace_id`, when given); None when
    nothing matches (or the prefix is ambiguous)."""
    query = select(ApiKey).where(or_(ApiKey.id == id_or_prefix, ApiKey.prefix == id_or_prefix))
    if workspace_id is not None:
        query = query.where(ApiKey.workspace_id == workspace_id)
    matches = list(await session.scalars(query))
    if len(matches) != 1:
        return None
    key = matches[0]
    if key.revoked_at is None:
        key.revoked_at = now()
    return key
