"""The ingest pipeline: a stored `processing` document becomes `ready` chunks, or `failed`.

    await recover_documents(sessions)                 # at start-up, before anything is indexed
    indexer = Indexer(sessions, embedder)
    ...
    document = await knowledge.add_document(session, kb, ...)   # in the route, then commit
    indexer.start(document.id, Upload(data, filename="手順書.pdf", content_type=None))
    ...
    await indexer.aclose()                            # at shutdown

In the background, a document is parsed and chunked in a worker thread (a 20 MB PDF never blocks
the event loop), its chunks embedded (when there is an embedder) and written with their postings
in short transactions of `batch` chunks, and finally marked `ready` with its chunk count. Any
problem marks only that document `failed`, with an `error` a user can act on, and removes what it
had written. `indexing` documents run `workers` at a time; the others wait their turn.

Deliberate oddities: a document left `processing` by a stopped process can never finish, so
start-up marks every such document failed. With several replicas, a replica that restarts while
another is still indexing fails that document too; it must then be uploaded again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.knowledge.chunk import chunk_text
from kaiwa.knowledge.embed import Embedder, EmbeddingError
from kaiwa.knowledge.ingest import (
    DEFAULT_LIMITS,
    Extracted,
    InflateLimits,
    IngestError,
    extract_text,
)
from kaiwa.knowledge.terms import counted_terms
from kaiwa.store import knowledge as store
from kaiwa.store.db import transaction

__all__ = ["STOPPED", "Indexer", "Upload", "recover_documents"]

logger = logging.getLogger(__name__)

STOPPED = "The server stopped while processing this document; upload it again"


@dataclass(frozen=True, slots=True)
class Upload:
    """An uploaded file, parsed in the background."""

    data: bytes
    filename: str
    content_type: str | None


async def recover_documents(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    """Mark documents a dead process left `processing` as failed; their ids."""
    async with transaction(sessions) as session:
        failed = await store.fail_documents(session, STOPPED)
    if failed:
        logger.warning(
            "%d knowledge-base documents were left processing; marked failed", len(failed)
        )
    return failed


class Indexer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        embedder: Embedder | None,
        *,
        max_chars: int = 600,
        overlap: int = 100,
        batch: int = 64,
        workers: int = 1,
        limits: InflateLimits = DEFAULT_LIMITS,
    ) -> None:
        """`limits`: how far a document may unpack (`max_extracted_bytes`, `max_compression_ratio`);
        past them it fails with a message naming the setting."""
        self._sessions = sessions
        self._limits = limits
        self._embedder = embedder
        self._max_chars = max_chars
        self._overlap = overlap
        self._batch = batch
        self._slots = asyncio.Semaphore(workers)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    def start(self, document_id: str, content: Upload | Extracted, *, title: str | None) -> None:
        """Index a stored `processing` document in the background.

        `title`: the one the client gave, kept; with none, the document's own title is stored.
        """
        if self._closed:
            raise RuntimeError("the indexer is closed")
        task = asyncio.create_task(self._run(document_id, content, title))
        self._tasks[document_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(document_id, None))

    def cancel(self, document_ids: Iterable[str]) -> None:
        """Stop indexing these documents (they were deleted)."""
        for document_id in document_ids:
            task = self._tasks.get(document_id)
            if task is not None:
                task.cancel()

    async def join(self) -> None:
        """Wait until every document being indexed is ready or failed."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop indexing; the documents it stopped are marked failed."""
        self._closed = True
        stopped = list(self._tasks)
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)
        if stopped:
            async with transaction(self._sessions) as session:
                await store.fail_documents(session, STOPPED, document_ids=stopped)

    async def _run(self, document_id: str, content: Upload | Extracted, title: str | None) -> None:
        async with self._slots:
            try:
                await self._index(document_id, content, title)
            except asyncio.CancelledError:
                raise
            except IngestError as exc:
                await self._fail(document_id, exc.message)
            except EmbeddingError as exc:
                await self._fail(
                    document_id, f"The embedding model failed ({exc}); upload it again later"
                )
            except Exception:
                logger.exception("indexing document %s failed", document_id)
                await self._fail(document_id, "An internal error stopped indexing this document")

    async def _index(
        self, document_id: str, content: Upload | Extracted, title: str | None
    ) -> None:
        extracted = await asyncio.to_thread(_extract, content, self._limits)
        chunks = await asyncio.to_thread(
            chunk_text, extracted.text, max_chars=self._max_chars, overlap=self._overlap
        )
        title = title or extracted.title
        for start in range(0, len(chunks), self._batch):
            new = await self._prepare(chunks[start : start + self._batch], start, title)
            async with transaction(self._sessions) as session:
                document = await store.lock_processing(session, document_id)
                if document is None:
                    return  # deleted meanwhile
                await store.add_chunks(session, document, new)
        async with transaction(self._sessions) as session:
            document = await store.lock_processing(session, document_id)
            if document is not None:
                await store.finish_document(session, document, title=title, chunk_count=len(chunks))

    async def _prepare(self, texts: list[str], first: int, title: str) -> list[store.NewChunk]:
        counted = await asyncio.to_thread(lambda: [counted_terms(text) for text in texts])
        vectors: list[bytes | None] = [None] * len(texts)
        model = None
        if self._embedder is not None:
            passages = [passage(title, text) for text in texts]
            matrix = await self._embedder.embed(passages, kind="passage")
            vectors = [row.astype("<f4").tobytes() for row in matrix]
            model = self._embedder.name
        return [
            store.NewChunk(
                ordinal=first + offset,
                text=text,
                terms=terms,
                embedding=vector,
                embedding_model=model,
            )
            for offset, (text, terms, vector) in enumerate(
                zip(texts, counted, vectors, strict=True)
            )
        ]

    async def _fail(self, document_id: str, message: str) -> None:
        async with transaction(self._sessions) as session:
            await store.fail_documents(session, message, document_ids=[document_id])


def passage(title: str, text: str) -> str:
    """What is embedded for a chunk: its document's title gives a bare chunk its topic."""
    return f"{title}\n{text}" if title and title not in text else text


def _extract(content: Upload | Extracted, limits: InflateLimits) -> Extracted:
    if isinstance(content, Extracted):
        return content
    return extract_text(
        content.data, filename=content.filename, content_type=content.content_type, limits=limits
    )
