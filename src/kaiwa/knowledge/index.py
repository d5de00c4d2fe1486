"""The ingest pipeline: a stored `processing` document becomes `ready` chunks, or `failed`.

    indexer = Indexer(sessions, embedder, blobs)
    ...
    key = await blobs.save(data)                                    # in the route
    document = await knowledge.add_document(session, kb, ..., storage_key=key)
    jobs.enqueue(session, "index", {"document_id": document.id, "title": None}, ...)
    ...
    await indexer.index_stored(document.id, title=None)             # the job, on any replica

A document is parsed and chunked in a worker thread (a 20 MB PDF never blocks the event loop),
its chunks embedded (when there is an embedder) and written with their postings in short
transactions of `batch` chunks, and finally marked `ready` with its chunk count; the uploaded
bytes it was read from are then deleted. A document that cannot be read (`IngestError`) is
marked `failed` with an `error` a user can act on. Anything else (the embedding service down,
the process dying) propagates: the job is retried, and `index_stored` starts over, dropping
the chunks an interrupted attempt left (`store.knowledge.begin_indexing`). Search only ever
sees `ready` documents, so it never sees half of one.

Why short transactions rather than one: on SQLite a transaction that writes holds the file's
only write lock, and a 20 MB document's chunks and postings take seconds to write; the answers
being streamed meanwhile must still be able to checkpoint.

`start`/`join`/`aclose` index content already in memory in tasks of this process, for the
built-in guide and the benchmarks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.files.storage import BlobNotFound, BlobStore
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

__all__ = ["STOPPED", "Indexer", "Upload"]

logger = logging.getLogger(__name__)

STOPPED = "The server stopped while processing this document; upload it again"
GONE = "The uploaded file of this document is gone; upload it again"


@dataclass(frozen=True, slots=True)
class Upload:
    """An uploaded file, parsed in the background."""

    data: bytes
    filename: str
    content_type: str | None


class Indexer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        embedder: Embedder | None,
        blobs: BlobStore | None = None,
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
        self._blobs = blobs
        self._limits = limits
        self._embedder = embedder
        self._max_chars = max_chars
        self._overlap = overlap
        self._batch = batch
        self._slots = asyncio.Semaphore(workers)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    async def index_stored(self, document_id: str, *, title: str | None) -> None:
        """Index a stored document from the bytes it was uploaded with; idempotent: a document
        already ready, or gone, is left alone, and one an earlier attempt left half-written
        starts over. Raises what a retry may cure (an `EmbeddingError`, a database error)."""
        if self._blobs is None:
            raise RuntimeError("this indexer has no blob store")
        async with transaction(self._sessions) as session:
            document = await store.begin_indexing(session, document_id)
        if document is None:
            return
        key = document.storage_key
        try:
            if key is None:
                raise BlobNotFound("")
            data = await self._blobs.read(key)
        except BlobNotFound:
            await self._fail(document_id, GONE)
            return
        upload = Upload(data, filename=document.source, content_type=document.content_type)
        del data
        try:
            extracted = await asyncio.to_thread(_extract, upload, self._limits)
            del upload  # the file's bytes are not needed once its text is out
            await self._write(document_id, extracted, title, started=document.updated_at)
        except IngestError as exc:
            await self._fail(document_id, exc.message)
        # Ready, or never readable: the bytes are not needed any more.
        await self._blobs.delete(key)

    async def fail(self, document_id: str, message: str) -> None:
        """Mark a document failed (its indexing will not be tried again)."""
        await self._fail(document_id, message)

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
        await self._write(document_id, extracted, title)

    async def _write(
        self,
        document_id: str,
        extracted: Extracted,
        title: str | None,
        *,
        started: datetime | None = None,
    ) -> None:
        chunks = await asyncio.to_thread(
            chunk_text, extracted.text, max_chars=self._max_chars, overlap=self._overlap
        )
        title = title or extracted.title
        for start in range(0, len(chunks), self._batch):
            new = await self._prepare(chunks[start : start + self._batch], start, title)
            async with transaction(self._sessions) as session:
                document = await store.lock_processing(session, document_id, started=started)
                if document is None:
                    return  # deleted meanwhile, or another replica took the job over
                await store.add_chunks(session, document, new)
        async with transaction(self._sessions) as session:
            document = await store.lock_processing(session, document_id, started=started)
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
