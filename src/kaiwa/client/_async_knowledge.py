"""The knowledge-base namespaces of `AsyncClient`: the awaited twins of `_knowledge`.

    kb = await client.knowledge_bases.create(name="FAQ")
    doc = await client.knowledge_bases.documents.add_text(kb.id, HOURS, title="営業時間")
    doc = await client.knowledge_bases.documents.wait_ready(kb.id, doc.id)   # ready or failed
    hits = await client.knowledge_bases.search(kb.id, "土曜日は何時まで?", top_k=3)

Management keys only. A document is indexed after it is accepted (`status` `processing`);
`wait_ready` polls until it is `ready` or `failed`.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from kaiwa.client import _calls as calls
from kaiwa.client._async_resources import PAGE_SIZE, _Resource
from kaiwa.client._calls import Id
from kaiwa.client._exceptions import KaiwaError
from kaiwa.client._files import FileInput, file_part
from kaiwa.client._models import Document, KnowledgeBase, Page, SearchHit

if TYPE_CHECKING:
    from kaiwa.client._client import AsyncClient

WAIT_TIMEOUT = 120.0
WAIT_INTERVAL = 0.25
MAX_WAIT_INTERVAL = 2.0


class AsyncKnowledgeBases(_Resource):
    """[ext] Knowledge bases of the workspace; their documents are `.documents`."""

    def __init__(self, client: AsyncClient) -> None:
        super().__init__(client)
        self.documents = AsyncDocuments(client)

    async def create(self, *, name: str, description: str | None = None) -> KnowledgeBase:
        return await self._client._call(
            calls.create_knowledge_base(name=name, description=description)
        )

    async def list(
        self, *, limit: int = calls.DEFAULT_LIMIT, offset: int = 0
    ) -> Page[KnowledgeBase]:
        return await self._client._call(calls.list_knowledge_bases(limit=limit, offset=offset))

    def iter_all(self, *, page_size: int = PAGE_SIZE) -> AsyncIterator[KnowledgeBase]:
        return self._client._paginate(
            lambda offset: calls.list_knowledge_bases(limit=page_size, offset=offset)
        )

    async def get(self, knowledge_base_id: Id) -> KnowledgeBase:
        return await self._client._call(calls.get_knowledge_base(knowledge_base_id))

    async def update(
        self, knowledge_base_id: Id, *, name: str | None = None, description: str | None = None
    ) -> KnowledgeBase:
        """Change the fields given; the others stay."""
        return await self._client._call(
            calls.update_knowledge_base(knowledge_base_id, name=name, description=description)
        )

    async def delete(self, knowledge_base_id: Id) -> None:
        """Delete it with its documents; agents that use it find nothing in it any more."""
        await self._client._call(calls.delete_knowledge_base(knowledge_base_id))

    async def search(
        self, knowledge_base_id: Id, query: str, *, top_k: int = 5
    ) -> builtins.list[SearchHit]:
        """The passages that best answer `query`, best first (`top_k` ≤ 50)."""
        return await self._client._call(
            calls.search_knowledge_base(knowledge_base_id, query=query, top_k=top_k)
        )


class AsyncDocuments(_Resource):
    """[ext] The documents of one knowledge base."""

    async def add_text(
        self, knowledge_base_id: Id, text: str, *, title: str | None = None
    ) -> Document:
        """Add a text; without a title, its first line is the title."""
        return await self._client._call(
            calls.add_text_document(knowledge_base_id, text=text, title=title)
        )

    async def upload(
        self,
        knowledge_base_id: Id,
        file: FileInput,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        title: str | None = None,
    ) -> Document:
        """Add a file (bytes, a path or a binary file object): text, markdown, HTML, PDF, …"""
        with file_part(file, filename=filename, content_type=content_type) as part:
            return await self._client._call(
                calls.upload_document(knowledge_base_id, part, title=title)
            )

    async def list(
        self, knowledge_base_id: Id, *, limit: int = calls.DEFAULT_LIMIT, offset: int = 0
    ) -> Page[Document]:
        return await self._client._call(
            calls.list_documents(knowledge_base_id, limit=limit, offset=offset)
        )

    def iter_all(
        self, knowledge_base_id: Id, *, page_size: int = PAGE_SIZE
    ) -> AsyncIterator[Document]:
        return self._client._paginate(
            lambda offset: calls.list_documents(knowledge_base_id, limit=page_size, offset=offset)
        )

    async def get(self, knowledge_base_id: Id, document_id: Id) -> Document:
        return await self._client._call(calls.get_document(knowledge_base_id, document_id))

    async def delete(self, knowledge_base_id: Id, document_id: Id) -> None:
        await self._client._call(calls.delete_document(knowledge_base_id, document_id))

    async def wait_ready(
        self,
        knowledge_base_id: Id,
        document_id: Id,
        *,
        timeout: float = WAIT_TIMEOUT,  # noqa: ASYNC109 (a deadline for polling, not one call)
        interval: float = WAIT_INTERVAL,
    ) -> Document:
        """Poll the document until it is no longer `processing`; returns it `ready` or `failed`
        (see `.error`). Raises `KaiwaError` if it is still processing after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            document = await self.get(knowledge_base_id, document_id)
            if document.status != "processing":
                return document
            if time.monotonic() >= deadline:
                raise KaiwaError(f"Document {document_id} was still processing after {timeout:g} s")
            await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 2, MAX_WAIT_INTERVAL)
