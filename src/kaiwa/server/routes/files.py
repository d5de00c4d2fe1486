"""Files: upload one for a chat to attach (`POST /chats/upload-file`), download it again.

`file_url` is the absolute URL of the download route; it takes the same `x-api-key` as every
other call, and serves a file only to keys of the workspace it was uploaded in.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import PurePath
from typing import Annotated
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from kaiwa.files import Blob, BlobNotFound, BlobStore, upload
from kaiwa.files.types import TEXT_TYPES, text_charset
from kaiwa.knowledge.inflate import InflateLimits
from kaiwa.protocol import ApiError, ErrorCode
from kaiwa.protocol.json_limits import parse_json
from kaiwa.server.deps import (
    CallerDep,
    KeyFirstRoute,
    ReadSessionDep,
    ServicesDep,
    SessionDep,
)
from kaiwa.server.envelope import ok
from kaiwa.server.schemas import UploadOptions, uploaded_file_out
from kaiwa.store import files
from kaiwa.store.models import UploadedFile

router = APIRouter(prefix="/api/v1/chats", tags=["files"], route_class=KeyFirstRoute)

# Served as a download rather than shown: HTML could run script on this origin, Word has no viewer.
_ATTACHMENT_TYPES = frozenset(
    {"text/html", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}
)


def _blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.files
    return blobs


def file_url(request: Request, file: UploadedFile) -> str:
    return str(request.url_for("download_file", file_uuid=file.uuid))


def upload_options(raw: str | None) -> UploadOptions:
    """The `data` part: a JSON object such as `{"scope": "ephemeral"}`; blank means defaults."""
    if raw is None or not raw.strip():
        return UploadOptions()
    try:
        value = parse_json(raw)
    except ValueError as exc:
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            f'data: must be a JSON string such as {{"scope": "persistent"}}, got malformed JSON'
            f" ({exc})",
        ) from None
    if not isinstance(value, dict):
        raise ApiError(
            ErrorCode.BAD_REQUEST, 'data: must be a JSON object such as {"scope": "persistent"}'
        )
    try:
        return UploadOptions.model_validate(value)
    except ValidationError:
        raise ApiError(
            ErrorCode.BAD_REQUEST,
            f"data.scope: must be 'persistent' or 'ephemeral', got {value.get('scope')!r}",
        ) from None


@router.post("/upload-file")
async def upload_file(
    request: Request,
    caller: CallerDep,
    session: SessionDep,
    services: ServicesDep,
    file: Annotated[UploadFile | None, File(description="The file")] = None,
    data: Annotated[
        str | UploadFile | None, Form(description='JSON: {"scope": "persistent"}')
    ] = None,
) -> JSONResponse:
    if file is None:
        raise ApiError(
            ErrorCode.BAD_REQUEST, "file: required (a multipart/form-data part named file)"
        )
    # Some clients send the JSON as a part of its own (a Blob in a browser's FormData).
    if data is None or isinstance(data, str):
        raw = data
    else:
        raw = (await data.read()).decode("utf-8", "replace")
    options = upload_options(raw)
    settings = services.settings
    stored = await upload(
        session,
        _blobs(request),
        workspace_id=caller.workspace_id,
        filename=file.filename,
        declared_type=file.content_type,
        # The file Starlette spooled the part to (on disk past 1 MiB): streamed, never read whole.
        file=file.file,
        scope=options.scope,
        max_bytes=settings.max_upload_bytes,
        limits=InflateLimits(
            max_bytes=settings.max_extracted_bytes, max_ratio=settings.max_compression_ratio
        ),
    )
    expires_at = None
    if stored.scope == "ephemeral":
        expires_at = stored.created_at + timedelta(seconds=settings.ephemeral_file_ttl)
    return ok(uploaded_file_out(stored, file_url(request, stored), expires_at=expires_at))


@router.get("/files/{file_uuid}", name="download_file")
async def download_file(
    request: Request, file_uuid: UUID, caller: CallerDep, session: ReadSessionDep
) -> StreamingResponse:
    """The file's bytes, with its content type and name."""
    file = await files.get_file(session, caller.workspace_id, str(file_uuid))
    await session.commit()  # nothing more to read: hold no snapshot while streaming
    if file is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"File {file_uuid} not found")
    blob = await _open(_blobs(request), file)
    chunks = blob.chunks()
    first = await anext(chunks, b"")
    media_type = file.content_type
    if media_type in TEXT_TYPES and (charset := text_charset(first)):
        media_type = f"{media_type}; charset={charset}"

    async def body() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk

    kind = "attachment" if file.content_type in _ATTACHMENT_TYPES else "inline"
    headers = {
        "Content-Length": str(blob.size),
        "Content-Disposition": content_disposition(kind, file.original_name),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Cache-Control": "private, max-age=3600",
    }
    return StreamingResponse(body(), media_type=media_type, headers=headers)


async def _open(blobs: BlobStore, file: UploadedFile) -> Blob:
    try:
        return await blobs.open(file.storage_key)
    except BlobNotFound:
        # The row outlived its bytes (expired a moment ago, or lost): gone for the client too.
        raise ApiError(ErrorCode.NOT_FOUND, f"File {file.uuid} not found") from None


def content_disposition(kind: str, name: str) -> str:
    """`inline; filename="x.pdf"; filename*=UTF-8''%E8%AD%B0.pdf` (RFC 6266 and 5987): old
    clients get an ASCII stand-in, every current one the real name."""
    path = PurePath(name)
    ascii_stem = unicodedata.normalize("NFKD", path.stem).encode("ascii", "ignore").decode()
    ascii_suffix = path.suffix.encode("ascii", "ignore").decode()
    fallback = "".join(
        char if char.isprintable() and char not in '"\\;' else "_"
        for char in (ascii_stem.strip() or "download") + ascii_suffix
    )
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
