"""A moto S3 server for the module tests of the S3 backend: one per session, a fresh bucket per
test; and `blob_store`, each test using it running on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.s3_server import S3Server, running_s3_server

from kaiwa.files import BlobStore, FileStore


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with running_s3_server() as server:
        yield server


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.create_bucket(f"kaiwa-{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["local", "s3"])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return FileStore(tmp_path / "files")
    server: S3Server = request.getfixturevalue("s3_server")
    return server.blob_store(request.getfixturevalue("bucket"))
