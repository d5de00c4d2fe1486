"""Knowledge-base indexing as a job: `index`, payload `{"document_id", "title"}`, queued in the
transaction that stores the document, run by whichever replica claims it.

    worker.register(IndexJobs(indexer, concurrency=1, attempts=3, backoff=2.0))

`Indexer.index_stored` is idempotent (a document already ready is left alone, one an earlier
attempt left half-written starts over), so a job run again after its replica died indexes the
document once. What a retry may cure is retried with backoff: the embedding service failing,
the database failing, the replica dying. When the attempts run out, the document is marked
`failed` with a reason a user can act on; its job stays `failed` for `kaiwa jobs retry`.
"""

from __future__ import annotations

from kaiwa.knowledge.embed import EmbeddingError
from kaiwa.knowledge.index import STOPPED, Indexer
from kaiwa.runtime.jobs import Retry
from kaiwa.store import jobs as store
from kaiwa.store.models import Job

__all__ = ["INDEX_JOB", "IndexJobs"]

INDEX_JOB = "index"
_EMBEDDING = "The embedding model failed"


class IndexJobs:
    kind = INDEX_JOB

    def __init__(
        self, indexer: Indexer, *, concurrency: int, attempts: int, backoff: float
    ) -> None:
        self._indexer = indexer
        self.concurrency = concurrency
        self.max_attempts = attempts
        self.backoff = backoff

    async def run(self, job: Job) -> None:
        title = job.payload.get("title")
        try:
            await self._indexer.index_stored(
                str(job.payload["document_id"]), title=str(title) if title else None
            )
        except EmbeddingError as exc:
            raise Retry(f"{_EMBEDDING} ({exc})") from exc

    async def give_up(self, job: Job, error: str) -> None:
        if error.startswith(_EMBEDDING):
            message = f"{error}; upload it again later"
        elif error == store.OWNER_STOPPED:
            message = STOPPED
        else:
            message = "An internal error stopped indexing this document"
        await self._indexer.fail(str(job.payload["document_id"]), message)
