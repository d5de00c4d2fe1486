"""Dense ranking: cosine similarity between a query vector and a knowledge base's chunk vectors.

The vectors of each knowledge base are read from the database once into one float32 matrix and
kept in process, least recently used first out past `max_bytes`. A matrix is reloaded when the
knowledge base's `(updated_at, count, max id)` of embedded ready chunks changes, so every replica
sees uploads and deletions by any other at its next search.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.knowledge.embed import Vectors
from kaiwa.store import knowledge as store

__all__ = ["DenseIndex"]

_Version = tuple[datetime, int, int]


@dataclass(frozen=True, slots=True)
class _Matrix:
    version: _Version
    ids: NDArray[np.int64]
    vectors: Vectors

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.vectors.nbytes)


class DenseIndex:
    def __init__(self, *, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._matrices: OrderedDict[tuple[str, str], _Matrix] = OrderedDict()

    async def rank(
        self,
        session: AsyncSession,
        knowledge_bases: dict[str, datetime],
        model: str,
        query: Vectors,
        *,
        limit: int,
    ) -> list[tuple[int, float]]:
        """The `limit` chunks most like `query` (one row): `(chunk_id, cosine)`, best first."""
        found: list[tuple[int, float]] = []
        vector = query.reshape(-1)
        for knowledge_base_id, updated_at in knowledge_bases.items():
            matrix = await self._matrix(session, knowledge_base_id, updated_at, model)
            if matrix is None or matrix.vectors.shape[1] != vector.shape[0]:
                continue
            scores = matrix.vectors @ vector
            top = _top(scores, limit)
            found.extend(zip(matrix.ids[top].tolist(), scores[top].tolist(), strict=True))
        found.sort(key=lambda pair: (-pair[1], pair[0]))
        return found[:limit]

    async def _matrix(
        self, session: AsyncSession, knowledge_base_id: str, updated_at: datetime, model: str
    ) -> _Matrix | None:
        key = (knowledge_base_id, model)
        count, highest = await store.embedding_state(session, knowledge_base_id, model)
        version = (updated_at, count, highest)
        cached = self._matrices.get(key)
        if cached is not None and cached.version == version:
            self._matrices.move_to_end(key)
            return cached
        self._matrices.pop(key, None)
        if count == 0:
            return None
        rows = await store.embeddings(session, knowledge_base_id, model)
        if not rows:
            return None
        ids = np.array([chunk_id for chunk_id, _ in rows], dtype=np.int64)
        widths = {len(blob) for _, blob in rows}
        if len(widths) != 1:
            # Mixed widths mean a model changed its output under the same name: use the newest.
            newest = len(rows[-1][1])
            keep = [index for index, (_, blob) in enumerate(rows) if len(blob) == newest]
            ids = ids[keep]
            rows = [rows[index] for index in keep]
        vectors = np.frombuffer(b"".join(blob for _, blob in rows), dtype="<f4").reshape(
            len(rows), -1
        )
        matrix = _Matrix(version, ids, vectors.astype(np.float32, copy=False))
        self._matrices[key] = matrix
        self._evict()
        return matrix

    def _evict(self) -> None:
        total = sum(matrix.nbytes for matrix in self._matrices.values())
        while total > self._max_bytes and len(self._matrices) > 1:
            _, dropped = self._matrices.popitem(last=False)
            total -= dropped.nbytes

    def forget(self, knowledge_base_ids: Sequence[str]) -> None:
        for key in [key for key in self._matrices if key[0] in knowledge_base_ids]:
            del self._matrices[key]


def _top(scores: NDArray[np.float32], limit: int) -> NDArray[np.intp]:
    if scores.shape[0] <= limit:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, limit - 1)[:limit]
    return part[np.argsort(-scores[part], kind="stable")]
