"""Uploads that unpack past `max_extracted_bytes` or `max_compression_ratio`: a chat upload is
400/10006 with nothing kept, a knowledge-base document fails naming the limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import Api, data, envelope, error
from sqlalchemy import func, select
from tests.unit.knowledge.bombs import docx_bomb, pdf_bomb
from tests.unit.knowledge.documents import docx_bytes

from kaiwa.store.models import UploadedFile

UPLOAD = "/api/v1/chats/upload-file"
KB = "/api/v1/knowledge-bases"
NO_EMBEDDINGS = {"embeddings": {"provider": "none"}}
MakeApi = Callable[..., Awaitable[Api]]
RATIO = "unpacks to more than 100 times its size (max_compression_ratio)"


async def upload(api: Api, name: str, content: bytes) -> httpx.Response:
    return await api.post(UPLOAD, files={"file": (name, content)}, key=api.chat_key)


async def stored_count(api: Api) -> int:
    async with api.store() as session:
        return int(await session.scalar(select(func.count()).select_from(UploadedFile)) or 0)


def blobs(api: Api) -> list[Path]:
    root: Path = api.app.state.files.root
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


async def add_document(api: Api, name: str, content: bytes) -> dict[str, Any]:
    """Upload a document to a new knowledge base; the document once indexing has ended."""
    response = await api.post(KB, json={"name": "FAQ"})
    kb_id = envelope(response)["data"]["id"]
    response = await api.post(f"{KB}/{kb_id}/documents", files={"file": (name, content)})
    assert response.status_code == 202, response.text
    await api.app.state.jobs.settle(["index"])
    document: dict[str, Any] = data(
        await api.get(f"{KB}/{kb_id}/documents/{envelope(response)['data']['id']}")
    )
    return document


@pytest.mark.parametrize(
    ("name", "bomb"),
    [("議事録.docx", docx_bomb(256)), ("手順書.pdf", pdf_bomb(256))],
    ids=["docx", "pdf"],
)
async def test_a_bomb_upload_is_400_naming_the_limit_and_nothing_is_kept(
    api: Api, name: str, bomb: bytes
) -> None:
    assert len(bomb) < 300 * 1024  # inflates to 256 MiB
    assert error(await upload(api, name, bomb), 400, 10006) == f"file: {name}: {RATIO}"
    assert await stored_count(api) == 0
    assert blobs(api) == []


# python-docx's template unpacks to about 800 kB, 22 times its size.
CAPPED = {"max_extracted_bytes": 200_000, "max_compression_ratio": 1000}
CAP = "unpacks to more than 200000 bytes (max_extracted_bytes)"


async def test_the_upload_limits_are_settings(make_api: MakeApi) -> None:
    api = await make_api(**CAPPED)
    message = error(await upload(api, "a.docx", docx_bytes(["本文"])), 400, 10006)
    assert message == f"file: a.docx: {CAP}"
    assert await stored_count(api) == 0
    assert blobs(api) == []


@pytest.mark.parametrize(
    ("settings", "name", "content", "reason"),
    [
        ({}, "bomb.docx", docx_bomb(256), RATIO),
        ({}, "bomb.pdf", pdf_bomb(256), RATIO),
        (CAPPED, "a.docx", docx_bytes(["本文"]), CAP),
    ],
    ids=["docx-bomb", "pdf-bomb", "setting"],
)
async def test_a_knowledge_base_document_past_the_limits_fails_naming_them(
    make_api: MakeApi, settings: dict[str, int], name: str, content: bytes, reason: str
) -> None:
    api = await make_api(**settings, **NO_EMBEDDINGS)
    document = await add_document(api, name, content)
    assert document["status"] == "failed"
    assert document["error"] == f"{name}: {reason}"
    assert document["chunk_count"] == 0
