"""Uploads stream into the configured `BlobStore` and back out, on both backends: the local
directory and an S3 bucket (a real S3-protocol server, moto, on loopback)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from api_support import Api, data, error
from tests.s3_server import S3Server, running_s3_server
from tests.unit.files import samples
from tests.unit.knowledge.bombs import docx_bomb

from kaiwa.store.models import UploadedFile

UPLOAD = "/api/v1/chats/upload-file"
MiB = 1024 * 1024
PREFIX = "kaiwa/"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


@dataclass
class Backend:
    settings: dict[str, Any]
    """Overrides of the app's settings."""
    s3: S3Server | None = None
    bucket: str = ""

    def kept(self, api: Api) -> list[str]:
        """The storage keys of every blob the app's store holds (and no upload left half-done)."""
        if self.s3 is None:
            root: Path = api.app.state.files.root
            files = [path for path in root.rglob("*") if path.is_file()] if root.exists() else []
            return sorted(path.relative_to(root).as_posix() for path in files)
        assert self.s3.multipart_uploads(self.bucket) == []
        return [key.removeprefix(PREFIX) for key in self.s3.keys(self.bucket)]


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """One backend; with `s3`, a fresh bucket of the module's server."""
    if request.param == "local":
        return Backend(settings={})
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = server.create_bucket(f"kaiwa-{uuid.uuid4().hex[:12]}")
    variables = server.settings(bucket, prefix=PREFIX)
    settings = {name.removeprefix("KAIWA_").lower(): value for name, value in variables.items()}
    return Backend(settings=settings, s3=server, bucket=bucket)


async def upload(api: Api, name: str, content: bytes) -> Any:
    return await api.post(UPLOAD, files={"file": (name, content)})


async def test_an_image_streams_into_the_store_and_back_unchanged(
    make_api: Any, backend: Backend
) -> None:
    api: Api = await make_api(**backend.settings)
    content = samples.png() + os.urandom(6 * MiB)
    file = data(await upload(api, "scan.png", content))
    assert (file["content_type"], file["size"]) == ("image/png", len(content))
    async with api.store() as session:
        row = await session.get(UploadedFile, file["uuid"])
    assert row is not None
    assert row.sha256 == hashlib.sha256(content).hexdigest()
    assert row.text is None
    assert backend.kept(api) == [row.storage_key]
    response = await api.get(f"/api/v1/chats/files/{file['uuid']}")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(content))
    assert response.content == content


async def test_a_document_is_read_for_its_text_and_kept_as_sent(
    make_api: Any, backend: Backend
) -> None:
    api: Api = await make_api(**backend.settings)
    content = "営業時間は9時から18時です。\n".encode() * 1000
    file = data(await upload(api, "営業時間.txt", content))
    async with api.store() as session:
        row = await session.get(UploadedFile, file["uuid"])
    assert row is not None
    assert row.text is not None
    assert "営業時間は9時から18時" in row.text
    assert (row.size, row.sha256) == (len(content), hashlib.sha256(content).hexdigest())
    assert backend.kept(api) == [row.storage_key]
    response = await api.get(f"/api/v1/chats/files/{file['uuid']}")
    assert response.content == content


async def test_refused_uploads_keep_nothing_in_the_store(make_api: Any, backend: Backend) -> None:
    api: Api = await make_api(**backend.settings, max_upload_bytes=256 * 1024)
    refused = [
        ("photo.png", b"not a picture at all"),
        ("empty.txt", b""),
        ("tool.exe", b"MZ\x90\x00"),
        ("large.png", samples.png() + os.urandom(256 * 1024)),
        ("議事録.docx", docx_bomb(64)),
    ]
    for name, content in refused:
        error(await upload(api, name, content), 400, 10006)
    assert backend.kept(api) == []
