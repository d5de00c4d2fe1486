"""[ext] Knowledge bases, their documents, and search. Management keys only.

A document is sent as a multipart `file` (with an optional `title` field) or as JSON
`{"title", "text"}`; its bytes are kept in blob storage, it is answered 202 with status
`processing`, and an `index` job indexes it on any replica (`kaiwa.runtime.indexing`): poll
`GET .../documents/{id}` until it is `ready` or `failed`.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from kaiwa.files import BlobStore
from kaiwa.files.storage import file_chunks
from kaiwa.knowledge.ingest import SUPPORTED_TYPES, UnsupportedType, detect_type
from kaiwa.knowledge.search import Hit, KnowledgeSearch
from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.runtime.indexing import INDEX_JOB
from kaiwa.server.deps import (
    KeyFirstRoute,
    ManagerDep,
    ReadSessionDep,
    ServicesDep,
    SessionDep,
)
from kaiwa.server.envelope import ok
from kaiwa.server.pagination import PageDep, pagination
from kaiwa.server.routes.params import check_name
from kaiwa.server.schemas import (
    MAX_TITLE_CHARS,
    CreateKnowledgeBase,
    KnowledgeBaseFields,
    SearchKnowledge,
    TextDocument,
)
from kaiwa.store import jobs, knowledge
from kaiwa.store.db import iso
from kaiwa.store.models import KbDocument, KnowledgeBase

router = APIRouter(
    prefix="/api/v1/knowledge-bases", tags=["knowledge bases"], route_class=KeyFirstRoute
)
B = TypeVar("B", bound=BaseModel)

_DOCUMENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "title": {"type": "string", "maxLength": MAX_TITLE_CHARS},
                    },
                }
            },
            "application/json": {"schema": TextDocument.model_json_schema()},
        },
    }
}


def knowledge_base_out(knowledge_base: KnowledgeBase, document_count: int) -> dict[str, Any]:
    return {
        "id": knowledge_base.id,
        "name": knowledge_base.name,
        "description": knowledge_base.description,
        "document_count": document_count,
        "created_at": iso(knowledge_base.created_at),
        "updated_at": iso(knowledge_base.updated_at),
    }


def document_out(document: KbDocument) -> dict[str, Any]:
    return {
        "id": document.id,
        "knowledge_base_id": document.knowledge_base_id,
        "title": document.title,
        "source": document.source,
        "content_type": document.content_type,
        "size": document.size,
        "status": document.status,
        "error": document.error,
        "chunk_count": document.chunk_count,
        "created_at": iso(document.created_at),
        "updated_at": iso(document.updated_at),
    }


def hit_out(hit: Hit) -> dict[str, Any]:
    return {
        "document_id": hit.document_id,
        "title": hit.title,
        "chunk_id": hit.chunk_id,
        "snippet": hit.snippet,
        "score": hit.score,
    }


def _blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.files
    return blobs


def _search(request: Request) -> KnowledgeSearch:
    search: KnowledgeSearch = request.app.state.knowledge
    return search


async def _knowledge_base(
    session: AsyncSession, workspace_id: str, knowledge_base_id: UUID
) -> KnowledgeBase:
    found = await knowledge.get_knowledge_base(session, workspace_id, str(knowledge_base_id))
    if found is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Knowledge base {knowledge_base_id} not found")
    return found


async def _document(
    session: AsyncSession, knowledge_base: KnowledgeBase, document_id: UUID
) -> KbDocument:
    found = await knowledge.get_document(session, knowledge_base, str(document_id))
    if found is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"Document {document_id} not found")
    return found


async def _out(session: AsyncSession, knowledge_base: KnowledgeBase) -> dict[str, Any]:
    counts = await knowledge.document_counts(session, [knowledge_base.id])
    return knowledge_base_out(knowledge_base, counts[knowledge_base.id])


@router.post("", status_code=201)
async def create_knowledge_base(
    body: CreateKnowledgeBase, caller: ManagerDep, session: SessionDep, services: ServicesDep
) -> JSONResponse:
    check_name(body.name, services.settings.max_name_chars)
    created = await knowledge.create_knowledge_base(
        session, caller.workspace_id, name=body.name, description=body.description
    )
    await session.commit()
    response = ok(knowledge_base_out(created, 0))
    response.status_code = 201
    return response


@router.get("")
async def list_knowledge_bases(
    request: Request, caller: ManagerDep, session: ReadSessionDep, page: PageDep
) -> JSONResponse:
    rows, total = await knowledge.list_knowledge_bases(
        session, caller.workspace_id, limit=page.limit, offset=page.offset
    )
    counts = await knowledge.document_counts(session, [row.id for row in rows])
    return ok(
        [knowledge_base_out(row, counts[row.id]) for row in rows],
        pagination(request, page, total),
    )


@router.get("/{knowledge_base_id}")
async def get_knowledge_base(
    knowledge_base_id: UUID, caller: ManagerDep, session: ReadSessionDep
) -> JSONResponse:
    found = await _knowledge_base(session, caller.workspace_id, knowledge_base_id)
    return ok(await _out(session, found))


@router.patch("/{knowledge_base_id}")
async def update_knowledge_base(
    knowledge_base_id: UUID,
    body: KnowledgeBaseFields,
    caller: ManagerDep,
    session: SessionDep,
    services: ServicesDep,
) -> JSONResponse:
    changes = body.changes()
    if "name" in changes:
        check_name(changes["name"], services.settings.max_name_chars)
    found = await _knowledge_base(session, caller.workspace_id, knowledge_base_id)
    knowledge.update_knowledge_base(found, **changes)
    out = await _out(session, found)
    await session.commit()
    return ok(out)


@router.delete("/{knowledge_base_id}")
async def delete_knowledge_base(
    request: Request, knowledge_base_id: UUID, caller: ManagerDep, session: SessionDep
) -> JSONResponse:
    found = await _knowledge_base(session, caller.workspace_id, knowledge_base_id)
    unindexed = await knowledge.delete_knowledge_base(session, found)
    await session.commit()
    # Documents still waiting to be indexed: their jobs find them gone and do nothing.
    for key in unindexed:
        await _blobs(request).delete(key)
    return ok({"id": found.id, "deleted": True})


@router.post("/{knowledge_base_id}/documents", status_code=202, openapi_extra=_DOCUMENT_BODY)
async def add_document(
    request: Request,
    knowledge_base_id: UUID,
    caller: ManagerDep,
    read_session: ReadSessionDep,
    session: SessionDep,
    services: ServicesDep,
) -> JSONResponse:
    """A file (multipart `file`, optional `title`) or JSON `{title, text}`; indexed after 202."""
    # Fail fast on an unknown knowledge base, before reading a large body.
    await _knowledge_base(read_session, caller.workspace_id, knowledge_base_id)
    await read_session.commit()
    blobs = _blobs(request)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        new = await _file_document(request, services.settings.max_upload_bytes, blobs)
    else:
        new = await _text_document(request, blobs)
    key = new.storage_key
    try:
        # The body is in hand: only now take the write transaction.
        found = await _knowledge_base(session, caller.workspace_id, knowledge_base_id)
        document = await knowledge.add_document(
            session,
            found,
            title=new.title,
            source=new.source,
            content_type=new.content_type,
            size=new.size,
            storage_key=key,
        )
        payload = {"document_id": document.id, "title": new.given_title}
        await jobs.enqueue(session, INDEX_JOB, payload, key=document.id)
        await session.commit()
    except BaseException:
        await session.rollback()
        await blobs.delete(key)
        raise
    await services.jobs.notify(INDEX_JOB)
    response = ok(document_out(document))
    response.status_code = 202
    return response


@dataclass(frozen=True, slots=True)
class _NewDocument:
    title: str
    """Shown while it is processing: the title given, else the file's name."""
    given_title: str | None
    source: str
    content_type: str
    size: int
    storage_key: str
    """Where its bytes were put, until it is indexed."""


async def _file_document(request: Request, limit: int, blobs: BlobStore) -> _NewDocument:
    """The uploaded file, streamed into blob storage from where the form spooled it."""
    async with request.form(max_files=1, max_fields=8) as form:
        file = form.get("file")
        title = form.get("title")
        if not isinstance(file, UploadFile):
            raise ApiError(
                ErrorCode.BAD_REQUEST, "file: required (a multipart/form-data part named file)"
            )
        if title is not None and not isinstance(title, str):
            raise ApiError(ErrorCode.BAD_REQUEST, "title: must be a text field, not a file")
        filename = _filename(file.filename)
        size = file.size if file.size is not None else len(await file.read())
        if size > limit:
            raise ApiError(
                ErrorCode.BAD_REQUEST,
                f"file: must be at most {limit} bytes (max_upload_bytes), got {size}",
            )
        if not size:
            raise ApiError(ErrorCode.BAD_REQUEST, f"file: {filename} is empty")
        try:
            content_type = detect_type(filename=filename, content_type=file.content_type)
        except UnsupportedType as exc:
            raise ApiError(ErrorCode.BAD_REQUEST, f"file: {exc.message}") from None
        title = _clean_title(title)
        await file.seek(0)
        key = await blobs.save_stream(file_chunks(file.file))
    return _NewDocument(
        title=title or filename,
        given_title=title or None,
        source=filename,
        content_type=content_type,
        size=size,
        storage_key=key,
    )


async def _text_document(request: Request, blobs: BlobStore) -> _NewDocument:
    body = _parse(TextDocument, await request.body())
    text = body.text.strip()
    if not text:
        raise ApiError(ErrorCode.BAD_REQUEST, "text: must not be empty")
    title = _clean_title(body.title) or text.splitlines()[0].strip()[:80]
    data = body.text.encode()
    content_type = SUPPORTED_TYPES["text"]
    return _NewDocument(
        title=title,
        given_title=title,
        source="",
        content_type=content_type,
        size=len(data),
        # Through the same pipeline as a file: line endings and stray NULs are tidied there.
        storage_key=await blobs.save(data),
    )


def _clean_title(title: str | None) -> str:
    if title is None:
        return ""
    if "\x00" in title:
        raise ApiError(ErrorCode.BAD_REQUEST, "title: must not contain NUL characters")
    if len(title) > MAX_TITLE_CHARS:
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            f"title: must be at most {MAX_TITLE_CHARS} characters, got {len(title)}",
        )
    return title.strip()


def _filename(raw: str | None) -> str:
    """The file's own name, without any directories, as text both databases can store."""
    name = PurePath((raw or "").replace("\\", "/")).name
    name = "".join(char for char in name if unicodedata.category(char) not in ("Cc", "Cs"))
    return name[:MAX_TITLE_CHARS] or "upload"


@router.get("/{knowledge_base_id}/documents")
async def list_documents(
    request: Request,
    knowledge_base_id: UUID,
    caller: ManagerDep,
    session: ReadSessionDep,
    page: PageDep,
) -> JSONResponse:
    found = await _knowledge_base(session, caller.workspace_id, knowledge_base_id)
    rows, total = await knowledge.list_documents(
        session, found, limit=page.limit, offset=page.offset
    )
    return ok([document_out(row) for row in rows], pagination(request, page, total))


@router.get("/{knowledge_base_id}/documents/{document_id}")
async def get_document(
    knowledge_base_id: UUID, document_id: UUID, caller: ManagerDep, session: ReadSessionDep
) -> JSONResponse:
    found = await _knowledge_base(session, caller.workspace_id, knowledge_base_id)
    return ok(document_out(await _document(session, found, document_id)))


@router.delete("/{knowledge_base_id}/documents/{document_id}")
async def delete_document(
    request: Request,
    knowledge_base_id: UUID,
    document_id: UUID,
    caller: ManagerDep,
    session: SessionDep,
) -> JSONResponse:
    found = await _knowledge_base(session, caller.workspace_id, knowledge_base_id)
    document = await _document(session, found, document_id)
    await knowledge.delete_document(session, document)
    await session.commit()
    # Deleted while waiting to be indexed: its job finds it gone and does nothing.
    if document.storage_key is not None:
        await _blobs(request).delete(document.storage_key)
    return ok({"id": document.id, "deleted": True})


@router.post(
    "/{knowledge_base_id}/search",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SearchKnowledge.model_json_schema()}},
        }
    },
)
async def search(
    request: Request, knowledge_base_id: UUID, caller: ManagerDep, session: ReadSessionDep
) -> JSONResponse:
    """The chunks that best answer `query`, best first; `score` in (0, 1]."""
    body = _parse(SearchKnowledge, await request.body())
    if not body.query.strip():
        raise ApiError(ErrorCode.BAD_REQUEST, "query: must not be empty")
    await _knowledge_base(session, caller.workspace_id, knowledge_base_id)
    await session.commit()
    hits = await _search(request).search(
        caller.workspace_id, [str(knowledge_base_id)], body.query, top_k=body.top_k
    )
    return ok([hit_out(hit) for hit in hits])


def _parse(model: type[B], raw: bytes) -> B:
    """A JSON body; every error names its field (the shared translation drops a field called
    `query`, taking it for the location of a query parameter)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "json_invalid" or not raw.strip():
        raise RequestValidationError(errors)
    if first["type"] == "model_type":
        raise ApiError(ErrorCode.BAD_REQUEST, "The JSON body must be an object")
    raise ApiError(
        ErrorCode.BAD_REQUEST,
        "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors),
    )
