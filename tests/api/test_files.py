"""`POST /chats/upload-file`, `GET /chats/files/{uuid}`, attachments in message listings."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from api_support import Api, data, error
from sqlalchemy import func, select
from tests.unit.files import samples

from kaiwa.store import files
from kaiwa.store.db import new_id, now
from kaiwa.store.keys import create_key
from kaiwa.store.models import Message, UploadedFile, Workspace

UPLOAD = "/api/v1/chats/upload-file"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
UPLOAD_KEYS = {"uuid", "original_name", "content_type", "size", "file_url", "scope"}


async def upload(
    api: Api,
    name: str,
    content: bytes,
    content_type: str | None = None,
    *,
    options: str | None = None,
    key: str | None = None,
) -> httpx.Response:
    part: tuple[str, bytes] | tuple[str, bytes, str] = (
        (name, content) if content_type is None else (name, content, content_type)
    )
    form = {"data": options} if options is not None else None
    return await api.post(UPLOAD, files={"file": part}, data=form, key=key)


async def uploaded(api: Api, name: str, content: bytes, content_type: str | None = None) -> Any:
    return data(await upload(api, name, content, content_type))


async def stored(api: Api, file_uuid: str) -> UploadedFile | None:
    async with api.store() as session:
        return await session.get(UploadedFile, file_uuid)


async def stored_count(api: Api) -> int:
    async with api.store() as session:
        return int(await session.scalar(select(func.count()).select_from(UploadedFile)) or 0)


def blobs(api: Api) -> list[Path]:
    root: Path = api.app.state.files.root
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


async def other_workspace_key(api: Api) -> str:
    async with api.store() as session:
        other = Workspace(id=new_id(), name="other", whitelist_mode=False, created_at=now())
        session.add(other)
        await session.flush()
        _, key = await create_key(session, other.id, name="other")
    return key


async def test_upload_answers_the_codeer_shape_and_downloads_the_same_bytes(api: Api) -> None:
    content = b"Opening hours: 9 to 18.\n"
    file = await uploaded(api, "hours.txt", content, "text/plain")
    assert set(file) >= UPLOAD_KEYS
    assert file["original_name"] == "hours.txt"
    assert file["content_type"] == "text/plain"
    assert file["size"] == len(content)
    assert file["scope"] == "persistent"
    assert file["expires_at"] is None
    assert file["extraction_error"] is None
    assert file["file_url"] == f"http://testserver/api/v1/chats/files/{file['uuid']}"

    response = await api.get(file["file_url"], key=api.chat_key)
    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == str(len(content))
    assert response.headers["content-disposition"] == (
        "inline; filename=\"hours.txt\"; filename*=UTF-8''hours.txt"
    )
    assert response.headers["x-content-type-options"] == "nosniff"

    row = await stored(api, file["uuid"])
    assert row is not None
    assert row.text == "Opening hours: 9 to 18."
    assert row.workspace_id == api.workspace_id
    assert len(row.sha256) == 64
    assert blobs(api) == [api.app.state.files.path(row.storage_key)]


@pytest.mark.parametrize(
    ("name", "content", "declared", "content_type", "text"),
    [
        ("notes.md", b"# Plan\n\nShip the *beta*.", "text/plain", "text/markdown", "Ship"),
        ("notes.md", b"# Plan\n\nShip it.", None, "text/markdown", "Ship it"),
        ("table.csv", b"name,price\ntea,300\n", "application/vnd.ms-excel", "text/csv", "tea"),
        ("data.json", b'{"answer": 42}', "application/json", "application/json", "42"),
        ("page.html", b"<html><body><p>Hello page</p></body></html>", None, "text/html", "Hello"),
        ("report.pdf", samples.pdf("Revenue grew 12 percent"), None, "application/pdf", "12"),
        ("report.pdf", samples.pdf("Revenue"), "application/octet-stream", "application/pdf", ""),
        ("letter.docx", samples.docx("見積もりの金額", "Second"), None, DOCX, "見積もり"),
        ("letter.docx", samples.docx("Dear team"), "application/octet-stream", DOCX, "Dear"),
        ("dot.png", samples.png(), "image/png", "image/png", None),
        ("photo.jpg", samples.JPEG, "image/jpeg", "image/jpeg", None),
        ("anim.gif", samples.GIF, None, "image/gif", None),
        ("pic.webp", samples.WEBP, "image/webp", "image/webp", None),
        # The bytes decide for the formats they identify.
        ("scan.txt", samples.png(), "text/plain", "image/png", None),
        ("README", b"plain words", "text/plain", "text/plain", "plain words"),
    ],
)
async def test_each_accepted_kind_is_stored_with_its_type_and_text(
    api: Api, name: str, content: bytes, declared: str | None, content_type: str, text: str | None
) -> None:
    file = await uploaded(api, name, content, declared)
    assert file["content_type"] == content_type
    assert file["size"] == len(content)
    row = await stored(api, file["uuid"])
    assert row is not None
    if text is None:
        assert row.text is None
    else:
        assert row.text is not None
        assert text in row.text
    assert row.error is None
    response = await api.get(file["file_url"])
    assert response.content == content
    assert response.headers["content-type"].split(";")[0] == content_type


async def test_a_japanese_file_name_survives_upload_listing_and_download(api: Api) -> None:
    name = "議事録 2026年11月.txt"
    content = "営業時間は9時から18時です。".encode()
    file = await uploaded(api, name, content, "text/plain")
    assert file["original_name"] == name
    response = await api.get(file["file_url"])
    assert response.content == content
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('inline; filename="')
    assert f"filename*=UTF-8''{quote(name, safe='')}" in disposition
    # The ASCII stand-in for old clients is printable ASCII and keeps the extension.
    fallback = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback.isascii()
    assert fallback.endswith(".txt")


async def test_shift_jis_text_is_served_with_its_charset(api: Api) -> None:
    content = "東京都の営業所一覧\n".encode("cp932")
    file = await uploaded(api, "営業所.csv", content, "text/csv")
    response = await api.get(file["file_url"])
    assert response.headers["content-type"] == "text/csv; charset=shift_jis"
    assert response.content.decode("cp932") == "東京都の営業所一覧\n"
    row = await stored(api, file["uuid"])
    assert row is not None
    assert row.text == "東京都の営業所一覧"


async def test_html_and_word_files_download_as_attachments(api: Api) -> None:
    page = await uploaded(api, "x.html", b"<p>hi</p><script>alert(1)</script>", "text/html")
    response = await api.get(page["file_url"])
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["content-security-policy"] == "sandbox"
    word = await uploaded(api, "x.docx", samples.docx("hello"))
    assert (
        (await api.get(word["file_url"])).headers["content-disposition"].startswith("attachment;")
    )


@pytest.mark.parametrize(
    ("options", "scope"),
    [
        (None, "persistent"),
        ("", "persistent"),
        ('{"scope": "persistent"}', "persistent"),
        ('{"scope": "ephemeral"}', "ephemeral"),
        ('{"scope": "ephemeral", "unknown": 1}', "ephemeral"),
        ("{}", "persistent"),
    ],
)
async def test_scope_comes_from_the_data_part(
    make_api: Any, options: str | None, scope: str
) -> None:
    api: Api = await make_api(ephemeral_file_ttl=3600.0)
    file = data(await upload(api, "a.txt", b"text", "text/plain", options=options))
    assert file["scope"] == scope
    row = await stored(api, file["uuid"])
    assert row is not None
    assert row.scope == scope
    if scope == "ephemeral":
        assert file["expires_at"] is not None
        assert file["expires_at"] > file["created_at"]
    else:
        assert file["expires_at"] is None


async def test_the_data_part_may_also_come_as_a_json_part_of_its_own(api: Api) -> None:
    parts = {
        "file": ("a.txt", b"x", "text/plain"),
        "data": ("blob", b'{"scope": "ephemeral"}', "application/json"),
    }
    assert data(await api.post(UPLOAD, files=parts))["scope"] == "ephemeral"


@pytest.mark.parametrize(
    ("name", "content", "declared", "options", "words"),
    [
        ("a.txt", b"x", "text/plain", "{scope: ephemeral}", ["data", "JSON"]),
        ("a.txt", b"x", "text/plain", '["ephemeral"]', ["data", "object"]),
        ("a.txt", b"x", "text/plain", '{"scope": "forever"}', ["scope", "forever"]),
        ("a.txt", b"x", "text/plain", '{"scope": null}', ["scope"]),
        ("empty.txt", b"", "text/plain", None, ["file", "empty"]),
        ("setup.exe", b"MZ\x90\x00\x03", "application/x-msdownload", None, ["x-msdownload"]),
        ("archive.zip", samples.ZIP, "application/zip", None, ["application/zip", "text/plain"]),
        ("noext", b"\x00\x01\x02", None, None, ["unsupported", "image/png"]),
        ("fake.png", b"not an image", "image/png", None, ["PNG"]),
        ("binary.txt", b"\x00\x01\x02\x03", "text/plain", None, ["binary"]),
        ("sheet.xlsx", samples.ZIP, "application/vnd.ms-excel", None, ["unsupported"]),
    ],
)
async def test_bad_uploads_are_400_naming_the_problem_and_store_nothing(
    api: Api, name: str, content: bytes, declared: str | None, options: str | None, words: list[str]
) -> None:
    message = error(await upload(api, name, content, declared, options=options), 400, 10006)
    for word in words:
        assert word in message
    assert await stored_count(api) == 0
    assert blobs(api) == []


async def test_the_unsupported_type_message_lists_what_is_accepted(api: Api) -> None:
    message = error(await upload(api, "a.exe", b"MZ", "application/x-msdownload"), 400, 10006)
    for accepted in ("text/plain", "text/markdown", "text/csv", "application/pdf", ".docx"):
        assert accepted in message


async def test_a_missing_file_part_is_400(api: Api) -> None:
    message = error(await api.post(UPLOAD, data={"data": '{"scope": "ephemeral"}'}), 400, 10006)
    assert "file" in message
    message = error(await api.post(UPLOAD, files={"other": ("a.txt", b"x")}), 400, 10006)
    assert "file" in message
    message = error(await api.post(UPLOAD, json={"file": "abc"}), 400, 10006)
    assert "file" in message


async def test_a_file_over_the_upload_limit_is_400_naming_it(make_api: Any) -> None:
    api: Api = await make_api(max_upload_bytes=1000)
    message = error(await upload(api, "a.txt", b"x" * 1001, "text/plain"), 400, 10006)
    assert "1000" in message
    assert "max_upload_bytes" in message
    # Far over it, the body limit stops the request before it is read: 400 all the same.
    message = error(await upload(api, "a.txt", b"x" * 200_000, "text/plain"), 400, 10006)
    assert "max_upload_bytes" in message
    assert await stored_count(api) == 0
    assert blobs(api) == []
    assert data(await upload(api, "a.txt", b"x" * 1000, "text/plain"))["size"] == 1000


async def test_a_damaged_pdf_is_kept_with_its_extraction_error(api: Api) -> None:
    content = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >> endobj\ntrailer garbage"
    file = await uploaded(api, "broken.pdf", content, "application/pdf")
    assert file["content_type"] == "application/pdf"
    assert file["extraction_error"]
    assert "broken.pdf" in file["extraction_error"]
    row = await stored(api, file["uuid"])
    assert row is not None
    assert row.text is None
    assert row.error == file["extraction_error"]
    assert (await api.get(file["file_url"])).content == content
    # Not even a PDF header: still kept as what its name says, without text.
    file = await uploaded(api, "renamed.pdf", b"just some words", None)
    assert file["content_type"] == "application/pdf"
    assert file["extraction_error"]


async def test_uploads_need_a_valid_key_and_any_key_will_do(api: Api) -> None:
    response = await api.client.post(UPLOAD, files={"file": ("a.txt", b"x", "text/plain")})
    error(response, 401, 10001)
    assert data(await upload(api, "a.txt", b"x", "text/plain", key=api.chat_key))


async def test_downloads_are_for_the_uploading_workspace_only(api: Api) -> None:
    file = await uploaded(api, "a.txt", b"secret", "text/plain")
    other_key = await other_workspace_key(api)
    message = error(await api.get(file["file_url"], key=other_key), 404, 10003)
    assert file["uuid"] in message
    unknown = f"/api/v1/chats/files/{new_id()}"
    error(await api.get(unknown), 404, 10003)
    error(await api.get("/api/v1/chats/files/not-a-uuid"), 400, 10006)
    error(await api.client.get(file["file_url"]), 401, 10001)


async def test_a_file_whose_bytes_are_gone_is_404(api: Api) -> None:
    file = await uploaded(api, "a.txt", b"text", "text/plain")
    row = await stored(api, file["uuid"])
    assert row is not None
    api.app.state.files.path(row.storage_key).unlink()
    error(await api.get(file["file_url"]), 404, 10003)


async def _attach(api: Api, chat_id: int, file_uuids: list[str]) -> int:
    """Attach uploaded files to the chat's last user message, as a turn does; its id."""
    async with api.store() as session:
        message = await session.scalar(
            select(Message)
            .where(Message.chat_id == chat_id, Message.role == "user")
            .order_by(Message.id.desc())
            .limit(1)
        )
        assert message is not None
        attachable = await files.check_attachable(session, api.workspace_id, file_uuids)
        files.link(session, chat_id=chat_id, message_id=message.id, files=attachable)
        return message.id


async def test_message_listings_show_attached_files_in_order(api: Api) -> None:
    chat = await api.create_chat()
    assert (await api.send(chat["id"], "first", stream=False)).status_code == 200
    first = await uploaded(api, "b.pdf", samples.pdf("Beta"))
    second = await uploaded(api, "a.png", samples.png())
    message_id = await _attach(api, chat["id"], [first["uuid"], second["uuid"]])
    assert (await api.send(chat["id"], "second", stream=False)).status_code == 200

    listed = await api.messages(chat["id"])
    by_id = {message["id"]: message for message in listed}
    attached = by_id[message_id]["attached_files"]
    assert [item["uuid"] for item in attached] == [first["uuid"], second["uuid"]]
    for item, upload_data in zip(attached, (first, second), strict=True):
        assert {key: item[key] for key in UPLOAD_KEYS} == {
            key: upload_data[key] for key in UPLOAD_KEYS
        }
        assert item["id"] == upload_data["uuid"]
        assert item["type"] == upload_data["content_type"]
        assert item["name"] == upload_data["original_name"]
        assert item["url"] == upload_data["file_url"]
        assert item["attachment_type"] == "file"
    assert all(m["attached_files"] == [] for m in listed if m["id"] != message_id)


async def _wait_for_status(api: Api, url: str, status: int) -> None:
    async with asyncio.timeout(10):
        while True:
            if (await api.get(url)).status_code == status:
                return
            await asyncio.sleep(0.05)


async def test_unattached_ephemeral_files_expire_and_lose_their_bytes(make_api: Any) -> None:
    # Long enough that `kept` is attached well within it on a loaded machine; sweeps every 1 s.
    api: Api = await make_api(ephemeral_file_ttl=2.0)
    options = json.dumps({"scope": "ephemeral"})
    chat = await api.create_chat()
    assert (await api.send(chat["id"], "hello", stream=False)).status_code == 200
    kept = data(await upload(api, "kept.txt", b"kept", "text/plain", options=options))
    await _attach(api, chat["id"], [kept["uuid"]])
    loose = data(await upload(api, "loose.txt", b"gone", "text/plain", options=options))
    persistent = data(await upload(api, "p.txt", b"stays", "text/plain"))

    await _wait_for_status(api, loose["file_url"], 404)
    assert await stored(api, loose["uuid"]) is None
    await asyncio.sleep(1.2)  # another sweep: the others stay
    for file in (kept, persistent):
        response = await api.get(file["file_url"])
        assert response.status_code == 200, file
    assert len(blobs(api)) == 2
    listed = await api.messages(chat["id"])
    assert [item["uuid"] for m in listed for item in m["attached_files"]] == [kept["uuid"]]
