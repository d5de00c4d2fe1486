"""Knowledge bases, their documents, chunks and the lexical index (postings of search terms).

A document's chunks and postings are written while it is `processing`, in batches, and count for
search only once it is `ready`: every search query joins the document and checks its status.
Deleting a knowledge base or a document deletes its chunks and postings (foreign-key cascades).

The BM25 arithmetic runs in SQL, so that only the best chunk ids travel back, and the same
statement gives the same ranking on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import Float, Select, case, delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.store.db import new_id, now, paginate
from kaiwa.store.models import KbChunk, KbDocument, KbTerm, KnowledgeBase

DocumentStatus = Literal["processing", "ready", "failed"]
S = TypeVar("S", bound=Select[*tuple[Any, ...]])


# Knowledge bases.


async def create_knowledge_base(
    session: AsyncSession, workspace_id: str, *, name: str, description: str = ""
) -> KnowledgeBase:
    stamp = now()
    knowledge_base = KnowledgeBase(
        id=new_id(),
        workspace_id=workspace_id,
        name=name,
        description=description,
        created_at=stamp,
        updated_at=stamp,
    )
    session.add(knowledge_base)
    await session.flush()
    return knowledge_base


async def get_knowledge_base(
    session: AsyncSession, workspace_id: str, knowledge_base_id: str
) -> KnowledgeBase | None:
    knowledge_base = await session.get(KnowledgeBase, knowledge_base_id)
    if knowledge_base is None or knowledge_base.workspace_id != workspace_id:
        return None
    return knowledge_base


async def list_knowledge_bases(
    session: AsyncSession, workspace_id: str, *, limit: int, offset: int
) -> tuple[list[KnowledgeBase], int]:
    query = (
        select(KnowledgeBase)
        .where(KnowledgeBase.workspace_id == workspace_id)
        .order_by(KnowledgeBase.created_at, KnowledgeBase.id)
    )
    return await paginate(session, query, limit=limit, offset=offset)


async def document_counts(
    session: AsyncSession, knowledge_base_ids: Sequence[str]
) -> dict[str, int]:
    """How many documents each knowledge base holds, whatever their status."""
    if not knowledge_base_ids:
        return {}
    rows = await session.execute(
        select(KbDocument.knowledge_base_id, func.count())
        .where(KbDocument.knowledge_base_id.in_(knowledge_base_ids))
        .group_by(KbDocument.knowledge_base_id)
    )
    counts = {kb_id: int(count) for kb_id, count in rows}
    return {kb_id: counts.get(kb_id, 0) for kb_id in knowledge_base_ids}


def update_knowledge_base(
    knowledge_base: KnowledgeBase, *, name: str | None = None, description: str | None = None
) -> None:
    if name is not None:
        knowledge_base.name = name
    if description is not None:
        knowledge_base.description = description
    knowledge_base.updated_at = now()


async def delete_knowledge_base(session: AsyncSession, knowledge_base: KnowledgeBase) -> list[str]:
    """Delete it with its documents, chunks and postings; the storage keys of the bytes its
    documents still held (to delete once this commits)."""
    keys = list(
        await session.scalars(
            select(KbDocument.storage_key).where(
                KbDocument.knowledge_base_id == knowledge_base.id,
                KbDocument.storage_key.is_not(None),
            )
        )
    )
    await session.delete(knowledge_base)
    await session.flush()
    return [key for key in keys if key]


# Documents.


async def add_document(
    session: AsyncSession,
    knowledge_base: KnowledgeBase,
    *,
    title: str,
    source: str,
    content_type: str,
    size: int,
    storage_key: str | None = None,
) -> KbDocument:
    """A new document, `processing` until the indexer marks it ready or failed."""
    stamp = now()
    document = KbDocument(
        id=new_id(),
        knowledge_base_id=knowledge_base.id,
        workspace_id=knowledge_base.workspace_id,
        title=title,
        source=source,
        content_type=content_type,
        size=size,
        status="processing",
        error=None,
        chunk_count=0,
        storage_key=storage_key,
        created_at=stamp,
        updated_at=stamp,
    )
    session.add(document)
    knowledge_base.updated_at = stamp
    await session.flush()
    return document


async def get_document(
    session: AsyncSession, knowledge_base: KnowledgeBase, document_id: str
) -> KbDocument | None:
    document = await session.get(KbDocument, document_id)
    if document is None or document.knowledge_base_id != knowledge_base.id:
        return None
    return document


async def list_documents(
    session: AsyncSession, knowledge_base: KnowledgeBase, *, limit: int, offset: int
) -> tuple[list[KbDocument], int]:
    query = (
        select(KbDocument)
        .where(KbDocument.knowledge_base_id == knowledge_base.id)
        .order_by(KbDocument.created_at, KbDocument.id)
    )
    return await paginate(session, query, limit=limit, offset=offset)


async def delete_document(session: AsyncSession, document: KbDocument) -> None:
    await _touch(session, document.knowledge_base_id)
    await session.delete(document)
    await session.flush()


async def _touch(session: AsyncSession, knowledge_base_id: str) -> None:
    # A changed `updated_at` also tells search caches that the knowledge base changed.
    await session.execute(
        update(KnowledgeBase).where(KnowledgeBase.id == knowledge_base_id).values(updated_at=now())
    )


async def begin_indexing(session: AsyncSession, document_id: str) -> KbDocument | None:
    """Lock a document to (re)index it: `processing` again if an earlier attempt failed, and
    without the chunks an interrupted attempt left. None when it is gone or already ready."""
    document = await session.scalar(
        select(KbDocument).where(KbDocument.id == document_id).with_for_update()
    )
    if document is None or document.status == "ready":
        return None
    await session.execute(delete(KbChunk).where(KbChunk.document_id == document_id))
    document.status = "processing"
    document.error = None
    document.chunk_count = 0
    document.updated_at = now()
    await session.flush()
    return document


async def lock_processing(
    session: AsyncSession, document_id: str, *, started: datetime | None = None
) -> KbDocument | None:
    """The document, locked for this transaction, if it still exists and is `processing` —
    and, with `started` (the `updated_at` that `begin_indexing` gave it), if no later attempt
    has begun meanwhile (a replica presumed dead that wakes up must write nothing more)."""
    query = select(KbDocument).where(KbDocument.id == document_id)
    if started is not None:
        query = query.where(KbDocument.updated_at == started)
    document = await session.scalar(query.with_for_update())
    if document is None or document.status != "processing":
        return None
    return document


_ROWS_PER_STATEMENT = 2000
# A Core insert: the ORM's bulk path costs twice the time per row, on the event loop.
_POSTINGS = insert(KbTerm.__table__)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class NewChunk:
    ordinal: int
    text: str
    terms: Mapping[str, int]
    """Each search term of the chunk and how often it occurs."""
    embedding: bytes | None = None
    embedding_model: str | None = None


async def add_chunks(
    session: AsyncSession, document: KbDocument, chunks: Sequence[NewChunk]
) -> None:
    """Store chunks of a processing document and their postings."""
    if not chunks:
        return
    ids = await session.scalars(
        insert(KbChunk).returning(KbChunk.id, sort_by_parameter_order=True),
        [
            {
                "document_id": document.id,
                "knowledge_base_id": document.knowledge_base_id,
                "ordinal": chunk.ordinal,
                "text": chunk.text,
                "embedding": chunk.embedding,
                "embedding_model": chunk.embedding_model,
                "term_count": sum(chunk.terms.values()),
            }
            for chunk in chunks
        ],
    )
    postings = [
        {
            "knowledge_base_id": document.knowledge_base_id,
            "term": term,
            "chunk_id": chunk_id,
            "tf": tf,
            "length": length,
        }
        for chunk_id, chunk in zip(list(ids), chunks, strict=True)
        for length in [sum(chunk.terms.values())]
        for term, tf in chunk.terms.items()
    ]
    # In slices: the rows are prepared on the event loop, which must not stall for long.
    for start in range(0, len(postings), _ROWS_PER_STATEMENT):
        await session.execute(_POSTINGS, postings[start : start + _ROWS_PER_STATEMENT])


async def finish_document(
    session: AsyncSession, document: KbDocument, *, title: str, chunk_count: int
) -> None:
    document.title = title[:512]
    document.status = "ready"
    document.chunk_count = chunk_count
    document.storage_key = None
    document.updated_at = now()
    await _touch(session, document.knowledge_base_id)


async def fail_documents(
    session: AsyncSession, message: str, *, document_ids: Sequence[str] | None = None
) -> list[str]:
    """Mark processing documents failed (all of them, or those of `document_ids`) and drop
    whatever chunks they had stored; the ids of those marked."""
    query = select(KbDocument.id).where(KbDocument.status == "processing")
    if document_ids is not None:
        query = query.where(KbDocument.id.in_(document_ids))
    failed = list(await session.scalars(query))
    if not failed:
        return []
    await session.execute(delete(KbChunk).where(KbChunk.document_id.in_(failed)))
    await session.execute(
        update(KbDocument)
        .where(KbDocument.id.in_(failed))
        .values(status="failed", error=message, chunk_count=0, updated_at=now())
    )
    return failed


# Search.


async def searchable(
    session: AsyncSession, workspace_id: str, knowledge_base_ids: Sequence[str]
) -> dict[str, datetime]:
    """Those of the knowledge bases that exist in the workspace, with when each last changed."""
    if not knowledge_base_ids:
        return {}
    rows = await session.execute(
        select(KnowledgeBase.id, KnowledgeBase.updated_at).where(
            KnowledgeBase.workspace_id == workspace_id, KnowledgeBase.id.in_(knowledge_base_ids)
        )
    )
    return dict(rows.all())


def _ready_chunks(query: S, knowledge_base_ids: Sequence[str]) -> S:
    return query.join(KbDocument, KbDocument.id == KbChunk.document_id).where(
        KbChunk.knowledge_base_id.in_(knowledge_base_ids), KbDocument.status == "ready"
    )


def _unfinished(knowledge_base_ids: Sequence[str]) -> Select[int]:
    """Ids of the chunks stored so far for documents still processing: few, and not searchable.

    Excluding them is cheaper than checking every matched chunk's document for `ready`.
    """
    return (
        select(KbChunk.id)
        .join(KbDocument, KbDocument.id == KbChunk.document_id)
        .where(
            KbDocument.knowledge_base_id.in_(knowledge_base_ids),
            KbDocument.status == "processing",
        )
    )


async def corpus_size(
    session: AsyncSession, knowledge_base_ids: Sequence[str]
) -> tuple[int, float]:
    """How many ready chunks the knowledge bases hold, and their average term count."""
    query = select(func.count(), func.avg(KbChunk.term_count)).where(
        KbChunk.knowledge_base_id.in_(knowledge_base_ids),
        KbChunk.id.not_in(_unfinished(knowledge_base_ids)),
    )
    count, average = (await session.execute(query)).one()
    return int(count or 0), float(average or 0.0)


def _postings(knowledge_base_ids: Sequence[str], terms: Sequence[str]) -> list[Any]:
    return [
        KbTerm.knowledge_base_id.in_(knowledge_base_ids),
        KbTerm.term.in_(terms),
        KbTerm.chunk_id.not_in(_unfinished(knowledge_base_ids)),
    ]


async def document_frequencies(
    session: AsyncSession, knowledge_base_ids: Sequence[str], terms: Sequence[str]
) -> dict[str, int]:
    """In how many ready chunks each term occurs."""
    query = (
        select(KbTerm.term, func.count())
        .where(*_postings(knowledge_base_ids, terms))
        .group_by(KbTerm.term)
    )
    return {term: int(count) for term, count in await session.execute(query)}


async def bm25(
    session: AsyncSession,
    knowledge_base_ids: Sequence[str],
    weights: Mapping[str, float],
    *,
    average_length: float,
    limit: int,
    k1: float = 1.2,
    b: float = 0.75,
) -> list[tuple[int, float, float]]:
    """The best ready chunks by BM25: `(chunk_id, score, matched)`, best first.

    `weights` gives each query term its idf; `matched` is the sum of the weights of the terms
    the chunk has, whatever their frequency (how much of the query it covers).
    """
    if not weights:
        return []
    weight = case(
        *((KbTerm.term == term, literal(value, Float)) for term, value in weights.items()),
        else_=literal(0.0, Float),
    )
    norm = (
        literal(k1 * (1 - b), Float)
        + literal(k1 * b / max(average_length, 1e-9), Float) * KbTerm.length
    )
    score = func.sum(weight * KbTerm.tf * literal(k1 + 1, Float) / (KbTerm.tf + norm)).label(
        "score"
    )
    query = (
        select(KbTerm.chunk_id, score, func.sum(weight))
        .where(*_postings(knowledge_base_ids, list(weights)))
        .group_by(KbTerm.chunk_id)
        .order_by(score.desc(), KbTerm.chunk_id)
        .limit(limit)
    )
    return [
        (int(chunk_id), float(value), float(matched))
        for chunk_id, value, matched in await session.execute(query)
    ]


async def embedding_state(
    session: AsyncSession, knowledge_base_id: str, model: str
) -> tuple[int, int]:
    """`(count, max id)` of the ready chunks embedded by `model`: changes when they change."""
    query = _ready_chunks(
        select(func.count(), func.max(KbChunk.id)).select_from(KbChunk), [knowledge_base_id]
    ).where(KbChunk.embedding_model == model)
    count, highest = (await session.execute(query)).one()
    return int(count or 0), int(highest or 0)


async def embeddings(
    session: AsyncSession, knowledge_base_id: str, model: str
) -> list[tuple[int, bytes]]:
    """`(chunk_id, embedding)` of every ready chunk of the knowledge base embedded by `model`."""
    query = _ready_chunks(
        select(KbChunk.id, KbChunk.embedding).select_from(KbChunk), [knowledge_base_id]
    ).where(KbChunk.embedding_model == model, KbChunk.embedding.is_not(None))
    rows = await session.execute(query.order_by(KbChunk.id))
    return [(int(chunk_id), bytes(blob)) for chunk_id, blob in rows if blob is not None]


@dataclass(frozen=True, slots=True)
class ChunkView:
    chunk_id: int
    document_id: str
    knowledge_base_id: str
    title: str
    text: str


async def chunks(session: AsyncSession, chunk_ids: Sequence[int]) -> dict[int, ChunkView]:
    """The ready chunks among `chunk_ids`, with their document's title."""
    if not chunk_ids:
        return {}
    rows = await session.execute(
        select(
            KbChunk.id,
            KbChunk.document_id,
            KbChunk.knowledge_base_id,
            KbDocument.title,
            KbChunk.text,
        )
        .join(KbDocument, KbDocument.id == KbChunk.document_id)
        .where(KbChunk.id.in_(chunk_ids), KbDocument.status == "ready")
    )
    return {int(row[0]): ChunkView(int(row[0]), *row[1:]) for row in rows}
