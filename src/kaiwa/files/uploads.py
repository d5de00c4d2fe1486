"""Accepting an upload: check it, read its text, keep its bytes, record it.

    file = await upload(session, blobs, workspace_id=..., filename="議事録.docx",
                        declared_type=None, data=data, scope="persistent", max_bytes=20 << 20,
                        limits=InflateLimits(max_bytes=100 << 20, max_ratio=100))

Text is extracted for documents (text, Markdown, CSV, HTML, JSON, PDF, Word) by
`kaiwa.knowledge.ingest`, in a thread. A document whose text cannot be read (a damaged PDF, a scan
without a text layer) is still stored, with `error` saying why and no `text`: it can be attached
and downloaded, `lookup` just finds nothing in it. One that unpacks past `limits` (a zip bomb
dressed as a Word file) is refused like a file over `max_bytes`, and nothing of it is kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import unicodedata
from pathlib import PurePath

from sqlalchemy.ext.asyncio import AsyncSession

from kaiwa.files.storage import BlobStore
from kaiwa.files.types import DOCUMENT_TYPES, DOCX, detect_type
from kaiwa.knowledge.ingest import (
    DEFAULT_LIMITS,
    DocumentTooLarge,
    InflateLimits,
    IngestError,
    extract_text,
)
from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.store import files
from kaiwa.store.files import Scope
from kaiwa.store.models import UploadedFile

__all__ = ["clean_name", "extract", "upload"]

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 255

# How ingest reads each document type: its own types, named by an extension it knows.
_INGEST_AS = {
    "text/plain": ("text/plain", ".txt"),
    "text/csv": ("text/plain", ".txt"),
    "application/json": ("text/plain", ".txt"),
    "text/markdown": ("text/markdown", ".md"),
    "text/html": ("text/html", ".html"),
    "application/pdf": ("application/pdf", ".pdf"),
    DOCX: (DOCX, ".docx"),
}


def clean_name(filename: str | None) -> str:
    """The name to keep: no directories, no control characters, at most 255 characters."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if unicodedata.category(char) not in ("Cc", "Cs")).strip()
    if len(name) > MAX_NAME_CHARS:
        path = PurePath(name)
        suffix = path.suffix if len(path.suffix) <= 16 else ""
        name = path.stem[: MAX_NAME_CHARS - len(suffix)] + suffix
    return name or "file"


def _extract(
    data: bytes, name: str, content_type: str, limits: InflateLimits
) -> tuple[str | None, str | None]:
    ingest_type, extension = _INGEST_AS[content_type]
    ingest_name = PurePath(name).stem + extension
    try:
        extracted = extract_text(
            data, filename=ingest_name, content_type=ingest_type, limits=limits
        )
    except DocumentTooLarge as exc:
        raise DocumentTooLarge(exc.message.replace(ingest_name, name, 1)) from None
    except IngestError as exc:
        return None, exc.message.replace(ingest_name, name, 1)
    # A lone surrogate (from a damaged PDF's fonts) has no UTF-8 form the database could store.
    return extracted.text.encode("utf-8", "replace").decode("utf-8"), None


async def extract(
    data: bytes, *, name: str, content_type: str, limits: InflateLimits = DEFAULT_LIMITS
) -> tuple[str | None, str | None]:
    """`(text, error)` of a file: text for documents (or why there is none), neither for images.

    Raises `DocumentTooLarge` for a document that unpacks past `limits`.
    """
    if content_type not in DOCUMENT_TYPES:
        return None, None
    try:
        return await asyncio.to_thread(_extract, data, name, content_type, limits)
    except DocumentTooLarge:
        raise
    except Exception:
        # A parser bug must not lose the upload: the file is kept, without text.
        logger.exception("text extraction failed for %r (%s)", name, content_type)
        return None, f"{name}: the text of this file could not be read"


async def upload(
    session: AsyncSession,
    blobs: BlobStore,
    *,
    workspace_id: str,
    filename: str | None,
    declared_type: str | None,
    data: bytes,
    scope: Scope,
    max_bytes: int,
    limits: InflateLimits = DEFAULT_LIMITS,
) -> UploadedFile:
    """Check, extract, store and commit an uploaded file; raises `ApiError` with nothing kept.

    Too large, or unpacking past `limits`, is 400/10006 as in Codeer, like any other bad file.
    """
    if len(data) > max_bytes:
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            f"file: must be at most {max_bytes} bytes (max_upload_bytes), got {len(data)}",
        )
    if not data:
        raise ApiError(ErrorCode.BAD_REQUEST, "file: must not be empty")
    name = clean_name(filename)
    content_type = detect_type(data, filename=name, declared=declared_type)
    try:
        text, error = await extract(data, name=name, content_type=content_type, limits=limits)
    except DocumentTooLarge as exc:
        raise ApiError(ErrorCode.BAD_REQUEST, f"file: {exc.message}") from None
    digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
    key = await blobs.save(data)
    try:
        file = files.add_file(
            session,
            workspace_id=workspace_id,
            original_name=name,
            content_type=content_type,
            size=len(data),
            sha256=digest,
            scope=scope,
            storage_key=key,
            text=text,
            error=error,
        )
        await session.commit()
    except BaseException:
        await session.rollback()
        await blobs.delete(key)
        raise
    return file
