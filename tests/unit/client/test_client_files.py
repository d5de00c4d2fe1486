"""Uploads and downloads: a file given as bytes, a path or a file object becomes one multipart
part (name, type, bytes, and the `data` JSON string); a download is the bytes as they came; a
knowledge-base document goes up the same way and `wait_ready` polls it. Both clients.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.unit.client.client_support import (
    BASE_URL,
    FakeApi,
    close,
    error,
    make_client,
    ok,
    resolve,
)

from kaiwa.client import (
    APIConnectionError,
    BadRequestError,
    Document,
    KaiwaError,
    NotFoundError,
    UploadedFile,
)

FILE_UUID = "0e858958-bea2-474b-a971-d87fdf01b8b8"
NOTE = "配送について。離島は追加で2日かかります。".encode()
NOW = "2025-04-01T09:00:00Z"
UPLOADED = {
    "uuid": FILE_UUID,
    "original_name": "配送メモ.txt",
    "content_type": "text/plain",
    "size": len(NOTE),
    "file_url": f"{BASE_URL}/api/v1/chats/files/{FILE_UUID}",
    "scope": "persistent",
    "created_at": NOW,
    "expires_at": None,
    "extraction_error": None,
}
KB_ID = "3f806d1c-b1ca-4ed2-99f3-ca01a2f7e5a1"
DOC_ID = "e0648277-52c1-443b-8880-c9c28d528377"
DOCUMENTS = f"/knowledge-bases/{KB_ID}/documents"
DOCUMENT = {
    "id": DOC_ID,
    "knowledge_base_id": KB_ID,
    "title": "配送",
    "source": "配送メモ.txt",
    "content_type": "text/plain",
    "size": len(NOTE),
    "status": "processing",
    "error": None,
    "chunk_count": 0,
    "created_at": NOW,
    "updated_at": NOW,
}


@dataclass
class Part:
    filename: str | None
    content_type: str
    content: bytes


def parts(request: httpx.Request) -> dict[str, Part]:
    """The multipart body's parts by name, read back with the standard library's parser."""
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary="), content_type
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.content)
    found: dict[str, Part] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str)
        assert isinstance(payload, bytes)
        found[name] = Part(part.get_filename(), part.get_content_type(), payload)
    return found


def upload_api(reply: Any = None) -> FakeApi:
    return FakeApi().on("POST", "/chats/upload-file", reply or ok(UPLOADED))


async def test_bytes_are_uploaded_with_the_name_and_scope_given(kind: str) -> None:
    api = upload_api()
    client = make_client(kind, api)

    uploaded = await resolve(client.files.upload(NOTE, filename="配送メモ.txt", scope="ephemeral"))
    await close(client)

    assert isinstance(uploaded, UploadedFile)
    assert uploaded.uuid == FILE_UUID
    (request,) = api.requests
    assert request.url.path == "/api/v1/chats/upload-file"
    assert request.headers["accept"] == "application/json"
    sent = parts(request)
    assert sent.keys() == {"file", "data"}
    assert (sent["file"].filename, sent["file"].content_type) == ("配送メモ.txt", "text/plain")
    assert sent["file"].content == NOTE
    assert json.loads(sent["data"].content) == {"scope": "ephemeral"}
    assert sent["data"].filename is None


async def test_a_path_is_read_and_named_after_its_file(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.4 fake")
    api = upload_api()
    client = make_client(kind, api)

    await resolve(client.files.upload(path))
    await resolve(client.files.upload(str(path), content_type="application/x-custom"))
    await close(client)

    first, second = (parts(request) for request in api.requests)
    assert (first["file"].filename, first["file"].content_type) == ("report.pdf", "application/pdf")
    assert first["file"].content == b"%PDF-1.4 fake"
    assert json.loads(first["data"].content) == {"scope": "persistent"}
    assert second["file"].content_type == "application/x-custom"


async def test_a_file_object_is_sent_whole_and_left_open(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "メモ.md"
    path.write_bytes(NOTE)
    api = upload_api()
    client = make_client(kind, api)

    with path.open("rb") as opened:
        opened.read(8)  # httpx rewinds it: the whole file goes up
        await resolve(client.files.upload(opened))
        assert not opened.closed
    anonymous = io.BytesIO(NOTE)
    await resolve(client.files.upload(anonymous))
    await close(client)

    named, nameless = (parts(request)["file"] for request in api.requests)
    assert named.filename == "メモ.md"
    assert named.content == NOTE
    assert (nameless.filename, nameless.content_type) == ("upload", "application/octet-stream")


async def test_bytes_without_a_name_go_up_as_upload(kind: str) -> None:
    api = upload_api()
    client = make_client(kind, api)
    await resolve(client.files.upload(b"\x00\x01"))
    await close(client)

    sent = parts(api.last)["file"]
    assert (sent.filename, sent.content_type) == ("upload", "application/octet-stream")


async def test_a_refused_upload_raises_its_family(kind: str) -> None:
    too_big = error(400, 10006, "file: must be at most 20971520 bytes (max_upload_bytes), got 1")
    api = upload_api(too_big)
    client = make_client(kind, api)

    with pytest.raises(BadRequestError, match="max_upload_bytes"):
        await resolve(client.files.upload(NOTE, filename="big.txt"))
    await close(client)


async def test_a_download_is_the_bytes_as_they_came(kind: str) -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/plain; charset=utf-8"}
        return httpx.Response(200, content=NOTE, headers=headers)

    api = FakeApi().on("GET", f"/chats/files/{FILE_UUID}", serve)
    client = make_client(kind, api)

    content = await resolve(client.files.download(FILE_UUID))
    await close(client)

    assert content == NOTE
    assert api.last.headers["accept"] == "*/*"


async def test_a_missing_download_raises_not_found(kind: str) -> None:
    api = FakeApi().on("GET", f"/chats/files/{FILE_UUID}", error(404, 10003, "File not found"))
    client = make_client(kind, api)

    with pytest.raises(NotFoundError):
        await resolve(client.files.download(FILE_UUID))
    await close(client)


async def test_a_failed_download_connection_raises_a_connection_error(kind: str) -> None:
    api = FakeApi().on("GET", f"/chats/files/{FILE_UUID}", httpx.ConnectError("refused"))
    client = make_client(kind, api)

    with pytest.raises(APIConnectionError):
        await resolve(client.files.download(FILE_UUID))
    await close(client)


# -- knowledge-base documents ---------------------------------------------------------------------


async def test_a_document_file_goes_up_with_its_title(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "配送メモ.txt"
    path.write_bytes(NOTE)
    api = FakeApi().on("POST", DOCUMENTS, httpx.Response(202, json=_envelope(DOCUMENT)))
    client = make_client(kind, api)

    document = await resolve(client.knowledge_bases.documents.upload(KB_ID, path, title="配送"))
    untitled = await resolve(client.knowledge_bases.documents.upload(KB_ID, NOTE, filename="a.txt"))
    await close(client)

    assert isinstance(document, Document)
    assert document.status == "processing"
    assert isinstance(untitled, Document)
    titled, bare = (parts(request) for request in api.requests)
    assert titled.keys() == {"file", "title"}
    assert titled["title"].content.decode() == "配送"
    assert (titled["file"].filename, titled["file"].content) == ("配送メモ.txt", NOTE)
    assert bare.keys() == {"file"}


async def test_wait_ready_polls_until_the_document_is_no_longer_processing(kind: str) -> None:
    path = f"{DOCUMENTS}/{DOC_ID}"
    ready = {**DOCUMENT, "status": "ready", "chunk_count": 1}
    api = FakeApi().on("GET", path, ok(DOCUMENT), ok(DOCUMENT), ok(ready))
    client = make_client(kind, api)

    document = await resolve(
        client.knowledge_bases.documents.wait_ready(KB_ID, DOC_ID, interval=0.0)
    )
    await close(client)

    assert document.status == "ready"
    assert document.chunk_count == 1
    assert len(api.requests) == 3


async def test_wait_ready_returns_a_failed_document_with_its_error(kind: str) -> None:
    failed = {**DOCUMENT, "status": "failed", "error": "no text could be read"}
    api = FakeApi().on("GET", f"{DOCUMENTS}/{DOC_ID}", ok(failed))
    client = make_client(kind, api)

    document = await resolve(client.knowledge_bases.documents.wait_ready(KB_ID, DOC_ID))
    await close(client)

    assert (document.status, document.error) == ("failed", "no text could be read")


async def test_wait_ready_gives_up_after_its_timeout(kind: str) -> None:
    api = FakeApi().on("GET", f"{DOCUMENTS}/{DOC_ID}", ok(DOCUMENT))
    client = make_client(kind, api)

    with pytest.raises(KaiwaError, match=r"still processing after 0\.05 s"):
        await resolve(
            client.knowledge_bases.documents.wait_ready(KB_ID, DOC_ID, timeout=0.05, interval=0.01)
        )
    await close(client)

    assert len(api.requests) >= 2


async def test_iter_all_walks_knowledge_bases_and_documents(kind: str) -> None:
    def page(items: list[Any], offset: int, total: int) -> httpx.Response:
        pagination = {
            "limit": 1,
            "offset": offset,
            "total_records": total,
            "total_pages": total,
            "current_page": offset + 1,
            "next_page": None,
            "prev_page": None,
        }
        return ok(items, pagination=pagination)

    kb = {"id": KB_ID, "name": "FAQ"}
    api = (
        FakeApi()
        .on("GET", "/knowledge-bases", page([kb], 0, 2), page([{**kb, "name": "B"}], 1, 2))
        .on("GET", DOCUMENTS, page([DOCUMENT], 0, 1))
    )
    client = make_client(kind, api)

    names = [kb.name async for kb in _iterate(client.knowledge_bases.iter_all(page_size=1))]
    documents = [d.id async for d in _iterate(client.knowledge_bases.documents.iter_all(KB_ID))]
    await close(client)

    assert names == ["FAQ", "B"]
    assert documents == [DOC_ID]
    assert [r.url.params["offset"] for r in api.requests[:2]] == ["0", "1"]


async def _iterate(iterator: Any) -> Any:
    if hasattr(iterator, "__aiter__"):
        async for item in iterator:
            yield item
    else:
        for item in iterator:
            yield item


def _envelope(data: Any) -> dict[str, Any]:
    return {"data": data, "message": None, "error_code": 0, "pagination": None}
