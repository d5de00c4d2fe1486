"""Repeated requests answer once: the `Idempotency-Key` header, and retried sends.

A send, regenerate, form submission or batch creation may carry `Idempotency-Key`. The first
request with a key records it beside what it started, in the transaction that starts it; a repeat
within `idempotency_ttl` with the same body gets that again (the answer's stream, replayed after
its `Last-Event-ID`, or its outcome with `stream: false`; the same batch), and a repeat with
another body is refused 409. Two repeats that race are settled by the database: one starts, the
other answers like a repeat (`store.idempotency.KeyTaken`).

    key = check_key(idempotency_key)
    claim = Claim(key, fingerprint("send", chat_id, body), settings.idempotency_ttl)
    earlier = await find_earlier(session, caller, claim)       # None: start anew under the key
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from typing import Annotated

from fastapi import Header
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.server.deps import Caller
from kaiwa.store import idempotency
from kaiwa.store.db import now, transaction
from kaiwa.store.idempotency import Claim
from kaiwa.store.models import IdempotencyKey

__all__ = ["IdempotencyKeyHeader", "claim_of", "find_earlier", "purge"]

logger = logging.getLogger(__name__)

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Any unique string (a UUID): a repeat with the same key and body within "
        "24 h gets the first request's answer instead of starting a new one.",
    ),
]

MAX_KEY_LENGTH = 255
PURGE_INTERVAL = 600.0
"""Seconds between purges of expired keys."""


def claim_of(
    key: str | None, operation: str, target: object, body: BaseModel, ttl: float
) -> Claim | None:
    """The claim a request makes with its key (None without one): its digest covers the
    operation, what it acts on (a chat, a form) and every field of its body."""
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            f"Idempotency-Key: must be 1 to {MAX_KEY_LENGTH} printable ASCII characters "
            "(a UUID, say)",
        )
    asked = {"operation": operation, "target": str(target), "body": body.model_dump(mode="json")}
    digest = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()
    return Claim(key, digest, ttl)


async def find_earlier(
    session: AsyncSession, caller: Caller, claim: Claim
) -> IdempotencyKey | None:
    """What a request with the same key started, if any; 409 when it asked something else."""
    since = now() - timedelta(seconds=claim.ttl)
    earlier = await idempotency.find(session, caller.workspace_id, claim.key, since=since)
    await session.commit()
    if earlier is not None and earlier.fingerprint != claim.fingerprint:
        raise ApiError(
            ErrorCode.CONFLICT,
            f"Idempotency-Key {claim.key!r} was already used with a different request; "
            "use a new key for a new request",
        )
    return earlier


async def purge(sessions: async_sessionmaker[AsyncSession], *, ttl: float) -> int:
    """Delete expired keys (the `purge_idempotency_keys` periodic job); how many."""
    async with transaction(sessions) as session:
        removed = await idempotency.purge(session, before=now() - timedelta(seconds=ttl))
    if removed:
        logger.info("removed %d expired idempotency keys", removed)
    return removed
