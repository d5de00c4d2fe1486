"""[ext] Knowledge bases over HTTP: CRUD, documents of every type, limits, search, isolation.

Most tests run without embeddings (lexical search), which keeps them fast; the embedding paths
have tests of their own (a fake OpenAI-compatible endpoint, and the local model).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from api_support import Api, data, envelope, error
from sqlalchemy import func, select
from tests.fakes.embeddings_server import Failure, FakeEmbeddings
from tests.unit.knowledge.documents import docx_bytes, pdf_bytes

from kaiwa.knowledge.index import STOPPED
from kaiwa.store.db import new_id, now
from kaiwa.store.jobs import OWNER_STOPPED
from kaiwa.store.keys import create_key
from kaiwa.store.models import Job, KbChunk, KbDocument, KbTerm, Workspace

MakeApi = Callable[..., Awaitable[Api]]

KB = "/api/v1/knowledge-bases"
NO_EMBEDDINGS = {"embeddings": {"provider": "none"}}


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api(**NO_EMBEDDINGS)


async def create_kb(api: Api, name: str = "FAQ", **fields: Any) -> dict[str, Any]:
    response = await api.post(KB, json={"name": name, **fields})
    body = envelope(response)
    assert response.status_code == 201, body
    kb: dict[str, Any] = body["data"]
    return kb


async def upload(
    api: Api,
    kb_id: str,
    filename: str,
    content: bytes,
    content_type: str | None = None,
    **form: str,
) -> httpx.Response:
    file = (filename, content, content_type) if content_type else (filename, content)
    return await api.post(f"{KB}/{kb_id}/documents", files={"file": file}, data=form)


async def accepted(response: httpx.Response) -> dict[str, Any]:
    body = envelope(response)
    assert response.status_code == 202, body
    assert body["error_code"] == 0
    document: dict[str, Any] = body["data"]
    assert document["status"] == "processing"
    return document


async def settled(api: Api, kb_id: str, document_id: str) -> dict[str, Any]:
    """The document once it is ready or failed."""
    await api.app.state.jobs.settle(["index"])
    document: dict[str, Any] = data(await api.get(f"{KB}/{kb_id}/documents/{document_id}"))
    assert document["status"] in ("ready", "failed"), document
    return document


async def add_text(api: Api, kb_id: str, title: str, text: str) -> dict[str, Any]:
    document = await accepted(
        await api.post(f"{KB}/{kb_id}/documents", json={"title": title, "text": text})
    )
    return await settled(api, kb_id, document["id"])


async def search(api: Api, kb_id: str, query: str, **fields: Any) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = data(
        await api.post(f"{KB}/{kb_id}/search", json={"query": query, **fields})
    )
    return hits


async def count(api: Api, table: type[KbChunk] | type[KbTerm] | type[KbDocument]) -> int:
    async with api.store() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


# Knowledge bases.


async def test_knowledge_base_crud(api: Api) -> None:
    kb = await create_kb(api, "社内FAQ", description="よくある質問")
    assert set(kb) == {"id", "name", "description", "document_count", "created_at", "updated_at"}
    assert (kb["name"], kb["description"], kb["document_count"]) == ("社内FAQ", "よくある質問", 0)
    assert kb["created_at"].endswith("Z")
    assert data(await api.get(f"{KB}/{kb['id']}")) == kb

    second = await create_kb(api, "Policies")
    listed = await api.get(KB, params={"limit": 1})
    body = envelope(listed)
    assert [item["id"] for item in body["data"]] == [kb["id"]]
    assert body["pagination"]["total_records"] == 2
    assert body["pagination"]["next_page"].endswith("limit=1&offset=1")

    changed = data(await api.patch(f"{KB}/{kb['id']}", json={"description": "更新"}))
    assert (changed["name"], changed["description"]) == ("社内FAQ", "更新")
    assert changed["updated_at"] > kb["updated_at"]
    renamed = data(await api.patch(f"{KB}/{kb['id']}", json={"name": "FAQ", "description": None}))
    assert (renamed["name"], renamed["description"]) == ("FAQ", "更新")

    assert data(await api.delete(f"{KB}/{kb['id']}")) == {"id": kb["id"], "deleted": True}
    error(await api.get(f"{KB}/{kb['id']}"), 404, 10003)
    error(await api.delete(f"{KB}/{kb['id']}"), 404, 10003)
    assert [item["id"] for item in data(await api.get(KB))] == [second["id"]]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "name: Field required"),
        ({"name": ""}, "name: must not be empty"),
        ({"name": "   "}, "name: must not be empty"),
        ({"name": "x" * 257}, "name: must be at most 256 characters"),
        ({"name": 5}, "name: Input should be a valid string"),
        ({"name": "a\x00b"}, "name: must not contain NUL"),
        ({"name": "ok", "description": ["x"]}, "description"),
    ],
)
async def test_bad_knowledge_base_fields_are_400_and_store_nothing(
    api: Api, body: dict[str, Any], named: str
) -> None:
    assert named in error(await api.post(KB, json=body), 400, 10006)
    assert data(await api.get(KB)) == []


async def test_unknown_and_malformed_ids(api: Api) -> None:
    missing = new_id()
    for method, suffix in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("GET", "/documents"),
        ("POST", "/search"),
    ]:
        body = {"query": "x"} if suffix == "/search" else {"name": "x"}
        kwargs = {"json": body} if method != "GET" and method != "DELETE" else {}
        response = await api.request(method, f"{KB}/{missing}{suffix}", **kwargs)
        error(response, 404, 10003)
    error(await api.get(f"{KB}/not-a-uuid"), 400, 10006)
    kb = await create_kb(api)
    error(await api.get(f"{KB}/{kb['id']}/documents/{missing}"), 404, 10003)
    error(await api.get(f"{KB}/{kb['id']}/documents/12"), 400, 10006)


async def test_a_chat_key_may_not_manage_knowledge_bases(api: Api) -> None:
    kb = await create_kb(api)
    error(await api.get(KB, key=api.chat_key), 403, 10001)
    error(
        await api.post(f"{KB}/{kb['id']}/search", json={"query": "x"}, key=api.chat_key), 403, 10001
    )
    error(await api.get(KB, key=""), 401, 10001)


async def test_another_workspace_sees_404_everywhere(api: Api) -> None:
    kb = await create_kb(api)
    document = await add_text(
        api, kb["id"], "営業時間", "渋谷店の営業時間は午前8時から午後8時です。"
    )
    async with api.store() as session:
        other = Workspace(id=new_id(), name="other", whitelist_mode=False, created_at=now())
        session.add(other)
        await session.flush()
        _, other_key = await create_key(session, other.id, name="other")
    base = f"{KB}/{kb['id']}"
    assert data(await api.get(KB, key=other_key)) == []
    error(await api.get(base, key=other_key), 404, 10003)
    error(await api.patch(base, json={"name": "stolen"}, key=other_key), 404, 10003)
    error(await api.delete(base, key=other_key), 404, 10003)
    error(await api.get(f"{base}/documents", key=other_key), 404, 10003)
    error(await api.get(f"{base}/documents/{document['id']}", key=other_key), 404, 10003)
    error(await api.delete(f"{base}/documents/{document['id']}", key=other_key), 404, 10003)
    error(await api.post(f"{base}/search", json={"query": "営業時間"}, key=other_key), 404, 10003)
    response = await api.post(
        f"{base}/documents", json={"title": "x", "text": "injected"}, key=other_key
    )
    error(response, 404, 10003)
    # The search service itself ignores knowledge bases of another workspace.
    assert await api.app.state.knowledge.search(other.id, [kb["id"]], "営業時間") == []
    assert data(await api.get(base))["name"] == "FAQ"
    assert [hit["document_id"] for hit in await search(api, kb["id"], "営業時間")] == [
        document["id"]
    ]


# Documents.


async def test_every_supported_type_becomes_a_ready_document(api: Api) -> None:
    kb = await create_kb(api)
    files = [
        ("hours.txt", "営業時間は午前9時から午後6時です。".encode("shift_jis"), None),
        (
            "returns.md",
            "# 返品について\n\n未開封なら8日以内に返品できます。".encode(),
            "text/markdown",
        ),
        (
            "shipping.html",
            b"<html><head><title>Shipping</title></head><body><p>We ship within two days.</p>"
            b"</body></html>",
            "text/html",
        ),
        ("prices.pdf", pdf_bytes(["料金表", "月額2,480円です。"], title="料金プラン"), None),
        (
            "points.docx",
            docx_bytes(["100円ごとに1ポイント貯まります。"], heading="ポイント"),
            "application/octet-stream",
        ),
    ]
    ids = []
    for filename, content, content_type in files:
        document = await accepted(await upload(api, kb["id"], filename, content, content_type))
        assert document["title"] == filename  # until its own title is read
        assert document["source"] == filename
        assert document["size"] == len(content)
        assert document["knowledge_base_id"] == kb["id"]
        assert (document["error"], document["chunk_count"]) == (None, 0)
        ids.append(document["id"])
    titled = await accepted(
        await upload(api, kb["id"], "notes.txt", b"Refunds take ten days.", title="My title")
    )
    text = await accepted(
        await api.post(
            f"{KB}/{kb['id']}/documents", json={"text": "\n配送は2営業日以内です。\n2行目"}
        )
    )
    settled_documents = [await settled(api, kb["id"], document_id) for document_id in ids]
    assert [(d["status"], d["title"], d["content_type"]) for d in settled_documents] == [
        ("ready", "hours", "text/plain"),
        ("ready", "返品について", "text/markdown"),
        ("ready", "Shipping", "text/html"),
        ("ready", "料金プラン", "application/pdf"),
        (
            "ready",
            "ポイント",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
    ]
    assert all(d["chunk_count"] == 1 and d["error"] is None for d in settled_documents)
    assert (await settled(api, kb["id"], titled["id"]))["title"] == "My title"
    text_document = await settled(api, kb["id"], text["id"])
    assert (text_document["title"], text_document["source"]) == ("配送は2営業日以内です。", "")
    assert data(await api.get(f"{KB}/{kb['id']}"))["document_count"] == 7
    for query, title in [
        ("営業時間", "hours"),
        ("返品", "返品について"),
        ("ship", "Shipping"),
        ("月額", "料金プラン"),
        ("ポイント", "ポイント"),
        ("refunds", "My title"),
        ("配送", "配送は2営業日以内です。"),
    ]:
        hits = await search(api, kb["id"], query)
        assert [hit["title"] for hit in hits][:1] == [title], (query, hits)


async def test_a_corrupt_pdf_fails_alone(api: Api) -> None:
    kb = await create_kb(api)
    good = await add_text(api, kb["id"], "送料", "送料は全国一律550円です。")
    broken = await accepted(await upload(api, kb["id"], "壊れた.pdf", pdf_bytes(["本文"])[:200]))
    after = await accepted(
        await upload(api, kb["id"], "ok.pdf", pdf_bytes(["返品は8日以内です。"]))
    )
    failed = await settled(api, kb["id"], broken["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == "壊れた.pdf: the PDF is damaged and cannot be read"
    assert failed["chunk_count"] == 0
    assert (await settled(api, kb["id"], after["id"]))["status"] == "ready"
    assert (await settled(api, kb["id"], good["id"]))["status"] == "ready"
    assert [hit["title"] for hit in await search(api, kb["id"], "送料")] == ["送料"]
    assert [hit["title"] for hit in await search(api, kb["id"], "返品")] == ["ok"]
    listed = data(await api.get(f"{KB}/{kb['id']}/documents"))
    assert [d["status"] for d in listed] == ["ready", "failed", "ready"]


async def test_a_document_without_text_fails_with_a_reason(api: Api) -> None:
    kb = await create_kb(api)
    document = await accepted(await upload(api, kb["id"], "scan.pdf", pdf_bytes([""])))
    failed = await settled(api, kb["id"], document["id"])
    assert failed["status"] == "failed"
    assert "no text layer" in failed["error"]


async def test_upload_limits_and_bad_input_store_nothing(make_api: MakeApi) -> None:
    api = await make_api(max_upload_bytes=2048, **NO_EMBEDDINGS)
    kb = await create_kb(api)
    url = f"{KB}/{kb['id']}/documents"
    message = error(await upload(api, kb["id"], "big.txt", b"x" * 2049), 400, 10006)
    assert "2048" in message
    # Over the limit by far: the body limit answers before the route reads it, 400 all the same.
    error(await upload(api, kb["id"], "huge.txt", b"x" * 200_000), 400, 10006)
    message = error(await upload(api, kb["id"], "sheet.xlsx", b"PK\x03\x04"), 400, 10006)
    assert "sheet.xlsx" in message
    assert ".pdf" in message
    message = error(await upload(api, kb["id"], "photo.png", b"\x89PNG", "image/png"), 400, 10006)
    assert "image/png" in message
    assert "empty" in error(await upload(api, kb["id"], "empty.txt", b""), 400, 10006)
    assert "file" in error(
        await api.post(url, data={"title": "no file"}, files={"x": ("a", b"a")}), 400, 10006
    )
    long_title = {"title": "t" * 513}
    assert "title" in error(await upload(api, kb["id"], "a.txt", b"a", **long_title), 400, 10006)
    for body, named in [
        ({"title": "x", "text": ""}, "text: must not be empty"),
        ({"title": "x", "text": " \n "}, "text: must not be empty"),
        ({"title": "x"}, "text: Field required"),
        ({"text": 5}, "text: Input should be a valid string"),
        ({"text": "a", "title": "\x00"}, "title"),
        ([1, 2], "object"),
    ]:
        assert named in error(await api.post(url, json=body), 400, 10006)
    error(
        await api.post(url, content=b"{not json", headers={"content-type": "application/json"}),
        400,
        10006,
    )
    error(
        await api.post(url, content=b"\xff\xfe", headers={"content-type": "application/json"}),
        400,
        10006,
    )
    assert await count(api, KbDocument) == 0
    assert data(await api.get(f"{KB}/{kb['id']}"))["document_count"] == 0


async def test_documents_list_get_and_delete(api: Api) -> None:
    kb = await create_kb(api)
    first = await add_text(api, kb["id"], "解約", "定期便はいつでも解約できます。")
    second = await add_text(api, kb["id"], "送料", "送料は550円です。")
    body = envelope(await api.get(f"{KB}/{kb['id']}/documents", params={"limit": 1, "offset": 1}))
    assert [d["id"] for d in body["data"]] == [second["id"]]
    assert body["pagination"]["total_records"] == 2
    assert set(first) == {
        "id",
        "knowledge_base_id",
        "title",
        "source",
        "content_type",
        "size",
        "status",
        "error",
        "chunk_count",
        "created_at",
        "updated_at",
    }
    assert first["size"] == len("定期便はいつでも解約できます。".encode())
    deleted = data(await api.delete(f"{KB}/{kb['id']}/documents/{first['id']}"))
    assert deleted == {"id": first["id"], "deleted": True}
    error(await api.get(f"{KB}/{kb['id']}/documents/{first['id']}"), 404, 10003)
    assert await search(api, kb["id"], "解約") == []
    assert [hit["title"] for hit in await search(api, kb["id"], "送料")] == ["送料"]
    assert await count(api, KbChunk) == 1


async def test_deleting_a_knowledge_base_removes_its_documents_chunks_and_index(api: Api) -> None:
    kb = await create_kb(api)
    other = await create_kb(api, "other")
    await add_text(api, kb["id"], "解約", "定期便はいつでも解約できます。")
    await add_text(api, other["id"], "送料", "送料は550円です。")
    chunks, postings = await count(api, KbChunk), await count(api, KbTerm)
    data(await api.delete(f"{KB}/{kb['id']}"))
    assert await count(api, KbDocument) == 1
    assert await count(api, KbChunk) == chunks - 1
    assert 0 < await count(api, KbTerm) < postings
    assert [hit["title"] for hit in await search(api, other["id"], "送料")] == ["送料"]


async def test_deleting_a_document_while_it_is_processing(api: Api) -> None:
    kb = await create_kb(api)
    document = await accepted(await upload(api, kb["id"], "big.pdf", _large_pdf(pages=60)))
    data(await api.delete(f"{KB}/{kb['id']}/documents/{document['id']}"))
    await api.app.state.jobs.settle(["index"])
    assert await count(api, KbDocument) == 0
    assert await count(api, KbChunk) == 0


# Search.


async def test_search_results_contract(api: Api) -> None:
    kb = await create_kb(api)
    long_text = (
        "定期便の解約について。"
        + "星空珈琲のご案内です。" * 40
        + "解約は次回発送日の5日前までです。"
    )
    document = await add_text(api, kb["id"], "解約", long_text)
    for n in range(6):
        await add_text(api, kb["id"], f"doc {n}", f"定期便の案内 その{n}。お届けは毎月です。")
    hits = await search(api, kb["id"], "定期便の解約", top_k=3)
    assert len(hits) == 3
    for hit in hits:
        assert set(hit) == {"document_id", "title", "chunk_id", "snippet", "score"}
        assert isinstance(hit["chunk_id"], int)
        assert 0 < hit["score"] <= 1
        assert len(hit["snippet"]) <= 202
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
    assert hits[0]["document_id"] == document["id"]
    assert hits[0]["score"] == 1.0
    assert "解約" in hits[0]["snippet"]
    assert len(await search(api, kb["id"], "定期便")) == 5  # top_k defaults to 5
    assert len(await search(api, kb["id"], "定期便", top_k=50)) > 5
    assert await search(api, kb["id"], "zzz unrelated") == []
    empty = await create_kb(api, "empty")
    assert await search(api, empty["id"], "定期便") == []


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"top_k": 5}, "query: Field required"),
        ({"query": ""}, "query: must not be empty"),
        ({"query": "  "}, "query: must not be empty"),
        ({"query": "x", "top_k": 0}, "top_k"),
        ({"query": "x", "top_k": 51}, "top_k"),
        ({"query": "x", "top_k": "5"}, "top_k"),
        ({"query": 5}, "query"),
    ],
)
async def test_bad_search_requests_are_400(api: Api, body: dict[str, Any], named: str) -> None:
    kb = await create_kb(api)
    assert named in error(await api.post(f"{KB}/{kb['id']}/search", json=body), 400, 10006)


async def test_search_is_the_same_on_both_databases(api: Api) -> None:
    """Scores are computed in SQL: these exact values hold on SQLite and PostgreSQL."""
    kb = await create_kb(api)
    for title, text in [
        ("hours", "渋谷店の営業時間は午前8時から午後8時まで。定休日は水曜日です。"),
        ("support", "サポートの受付時間は平日10時から17時までです。"),
        ("shipping", "営業日の2日以内に発送します。"),
    ]:
        await add_text(api, kb["id"], title, text)
    hits = await search(api, kb["id"], "営業時間は何時まで")
    assert [(hit["title"], hit["score"]) for hit in hits] == [
        ("hours", 1.0),
        ("support", pytest.approx(61 / 62)),
        ("shipping", pytest.approx(61 / 63)),
    ]


# Embeddings.


async def test_embeddings_from_an_openai_compatible_endpoint(make_api: MakeApi) -> None:
    with FakeEmbeddings() as fake:
        settings = {"provider": "openai", "base_url": fake.base_url, "model": "fake-embed"}
        api = await make_api(embeddings=settings, index_attempts=2, index_backoff=0.05)
        kb = await create_kb(api)
        document = await add_text(api, kb["id"], "Cancel", "定期便はいつでも解約できます。")
        assert document["status"] == "ready"
        # The document's title goes with each chunk it embeds, for context.
        passages = [request.body for request in fake.requests]
        assert passages == [
            {"model": "fake-embed", "input": ["Cancel\n定期便はいつでも解約できます。"]}
        ]
        async with api.store() as session:
            chunk = await session.scalar(select(KbChunk))
            assert chunk is not None
            assert chunk.embedding_model == "openai/fake-embed"
            assert chunk.embedding is not None
            assert len(chunk.embedding) == 4 * fake.dimensions
        hits = await search(api, kb["id"], "解約したい")
        assert [hit["title"] for hit in hits] == ["Cancel"]
        assert fake.requests[-1].body["input"] == ["解約したい"]

        # The endpoint failing while a query is embedded: search answers lexically.
        fake.enqueue(Failure(503))
        assert [hit["title"] for hit in await search(api, kb["id"], "解約")] == ["Cancel"]

        # Failing once while a document is embedded: its job is tried again, and it is indexed.
        fake.enqueue(Failure(500))
        retried = await add_text(api, kb["id"], "返品", "返品は30日以内です。")
        assert (retried["status"], retried["chunk_count"]) == ("ready", 1)
        # Failing on every attempt: that document fails, saying why.
        fake.enqueue(Failure(500))
        fake.enqueue(Failure(500))
        failed = await add_text(api, kb["id"], "送料", "送料は550円です。")
        assert failed["status"] == "failed"
        assert "embedding model failed" in failed["error"]
        assert (
            data(await api.get(f"{KB}/{kb['id']}/documents/{document['id']}"))["status"] == "ready"
        )


async def test_dense_search_follows_uploads_and_deletions(make_api: MakeApi) -> None:
    """The in-process matrix of vectors is reloaded whenever the knowledge base changes."""
    with FakeEmbeddings() as fake:
        settings = {"provider": "openai", "base_url": fake.base_url, "model": "fake-embed"}
        api = await make_api(embeddings=settings)
        kb = await create_kb(api)
        first = await add_text(api, kb["id"], "first", "キャンセルの方法")
        knowledge = api.app.state.knowledge
        hits = await knowledge.search(api.workspace_id, [kb["id"]], "zzz", mode="dense")
        assert [hit.document_id for hit in hits] == [first["id"]]
        data(await api.delete(f"{KB}/{kb['id']}/documents/{first['id']}"))
        second = await add_text(api, kb["id"], "second", "返品の方法")
        hits = await knowledge.search(api.workspace_id, [kb["id"]], "zzz", mode="dense")
        assert [hit.document_id for hit in hits] == [second["id"]]
        third = await add_text(api, kb["id"], "third", "送料の案内")
        hits = await knowledge.search(api.workspace_id, [kb["id"]], "送料の案内", mode="dense")
        assert [hit.document_id for hit in hits] == [third["id"], second["id"]]


async def test_the_local_model_finds_a_paraphrase_lexical_search_misses(make_api: MakeApi) -> None:
    lexical = await make_api(**NO_EMBEDDINGS)
    kb = await create_kb(lexical)
    texts = {
        "解約": "定期便はマイページからいつでも解約できます。手数料はかかりません。",
        "営業時間": "渋谷店の営業時間は午前8時から午後8時までです。",
        "送料": "送料は全国一律550円、5,000円以上のご注文で無料です。",
    }
    for title, text in texts.items():
        await add_text(lexical, kb["id"], title, text)
    question = "サブスクをキャンセルしたい"
    assert await search(lexical, kb["id"], question) == []
    hybrid = await make_api(embeddings={"provider": "local"})
    kb = await create_kb(hybrid)
    for title, text in texts.items():
        await add_text(hybrid, kb["id"], title, text)
    assert next(hit["title"] for hit in await search(hybrid, kb["id"], question)) == "解約"


# Lifecycle.


def _large_pdf(pages: int) -> bytes:
    """About 8.7 KB a page (uncompressed, as scanned-then-OCRed PDFs often are)."""
    pick = random.Random(pages)
    words = [
        "営業時間",
        "定休日",
        "解約",
        "返品",
        "送料",
        "価格",
        "料金",
        "配送",
        "定期便",
        "お届け",
        "です",
        "ます。",
    ]

    def line() -> str:
        return "".join(pick.choice(words) for _ in range(16))[:40]

    return pdf_bytes(["\n".join(line() for _ in range(50)) for _ in range(pages)], compress=False)


async def test_the_event_loop_answers_while_a_large_pdf_is_parsed(api: Api) -> None:
    kb = await create_kb(api)
    content = _large_pdf(pages=300)
    assert len(content) > 2_000_000
    document = await accepted(await upload(api, kb["id"], "big.pdf", content))
    jobs = api.app.state.jobs
    await _until(lambda: jobs.running("index") == 1)
    worst = 0.0
    answered = 0
    while jobs.running("index"):  # parsing takes a few seconds, indexing a few more
        began = time.monotonic()
        response = await api.client.get("/healthz")
        assert response.status_code == 200
        worst = max(worst, time.monotonic() - began)
        answered += 1
        await asyncio.sleep(0.02)
    assert answered >= 20, "the document finished before the loop could be watched"
    # Parsing alone takes over 2 s: run on the loop, it would hold /healthz up that long. The
    # bound leaves room for a busy machine (threads still share the GIL).
    assert worst < 1.0, f"/healthz took {worst:.2f} s while a PDF was parsed"
    ready = await settled(api, kb["id"], document["id"])
    assert ready["status"] == "ready"
    assert ready["chunk_count"] > 100


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30.0):
        while not condition():  # noqa: ASYNC110 - a state of the worker, not an event
            await asyncio.sleep(0.01)


async def _job_rows(api: Api) -> list[Job]:
    async with api.store() as session:
        return list(await session.scalars(select(Job).where(Job.kind == "index")))


async def test_shutdown_gives_a_document_being_indexed_back_to_the_queue(
    make_api: MakeApi,
) -> None:
    first = await make_api(**NO_EMBEDDINGS)
    kb = await create_kb(first)
    document = await accepted(await upload(first, kb["id"], "big.pdf", _large_pdf(pages=100)))
    await _until(lambda: first.app.state.jobs.running("index") == 1)
    await first.app.state.jobs.aclose()
    stopped = data(await first.get(f"{KB}/{kb['id']}/documents/{document['id']}"))
    assert (stopped["status"], stopped["error"]) == ("processing", None)
    [job] = await _job_rows(first)
    assert (job.state, job.owner, job.attempts) == ("queued", None, 0)
    # The next process (or any other replica) indexes it, once.
    second = await make_api(**NO_EMBEDDINGS)
    ready = await settled(second, kb["id"], document["id"])
    assert ready["status"] == "ready"
    assert await count(second, KbChunk) == ready["chunk_count"] > 0
    assert await _job_rows(second) == []


async def test_a_document_whose_replica_died_is_indexed_by_another(make_api: MakeApi) -> None:
    first = await make_api(**NO_EMBEDDINGS, index_concurrency=0)
    kb = await create_kb(first)
    document = await accepted(
        await first.post(
            f"{KB}/{kb['id']}/documents",
            json={"title": "営業時間", "text": "営業時間は平日9時から18時です。"},
        )
    )
    # As a replica that took the job and died leaves it: running, its lease lapsed, and some
    # of the chunks it had written.
    async with first.store() as session:
        job = await session.scalar(select(Job).where(Job.kind == "index"))
        assert job is not None
        job.state, job.owner, job.attempts = "running", "dead-replica", 1
        job.lease_until = now() - timedelta(seconds=1)
        session.add(
            KbChunk(
                document_id=document["id"],
                knowledge_base_id=kb["id"],
                ordinal=0,
                text="half",
                term_count=1,
            )
        )
    second = await make_api(**NO_EMBEDDINGS)
    ready = await settled(second, kb["id"], document["id"])
    assert (ready["status"], ready["chunk_count"]) == ("ready", 1)
    assert await count(second, KbChunk) == 1
    assert await _job_rows(second) == []


async def test_a_document_whose_replica_died_on_its_last_attempt_fails_with_the_reason(
    make_api: MakeApi,
) -> None:
    first = await make_api(**NO_EMBEDDINGS, index_concurrency=0)
    kb = await create_kb(first)
    document = await accepted(
        await first.post(f"{KB}/{kb['id']}/documents", json={"title": "t", "text": "本文です。"})
    )
    async with first.store() as session:
        job = await session.scalar(select(Job).where(Job.kind == "index"))
        assert job is not None
        job.state, job.owner, job.attempts = "running", "dead-replica", 3
        job.lease_until = now() - timedelta(seconds=1)
    second = await make_api(**NO_EMBEDDINGS, index_attempts=3)
    failed = await settled(second, kb["id"], document["id"])
    assert (failed["status"], failed["error"]) == ("failed", STOPPED)
    [job] = await _job_rows(second)
    assert (job.state, job.last_error) == ("failed", OWNER_STOPPED)


def _blobs(api: Api) -> set[str]:
    root = api.app.state.files.root
    return {str(path) for path in root.rglob("*") if path.is_file()} if root.exists() else set()


async def test_a_document_keeps_its_upload_only_until_it_is_indexed_or_deleted(
    make_api: MakeApi,
) -> None:
    # A process that indexes nothing: the documents stay queued, holding their bytes.
    api = await make_api(**NO_EMBEDDINGS, index_concurrency=0)
    kb = await create_kb(api)
    queued = [
        await accepted(await upload(api, kb["id"], f"{name}.txt", f"{name} の本文".encode()))
        for name in ("a", "b")
    ]
    assert len(_blobs(api)) == 2
    await api.delete(f"{KB}/{kb['id']}/documents/{queued[0]['id']}")
    assert len(_blobs(api)) == 1
    await api.delete(f"{KB}/{kb['id']}")
    assert _blobs(api) == set()
    # The jobs of deleted documents find nothing to do.
    indexing = await make_api(**NO_EMBEDDINGS)
    await indexing.app.state.jobs.settle(["index"])
    assert await count(indexing, KbChunk) == 0

    # Indexed, a document's upload is gone: its chunks are what is kept.
    other = await create_kb(indexing)
    document = await accepted(await upload(indexing, other["id"], "c.txt", "本文".encode()))
    assert (await settled(indexing, other["id"], document["id"]))["status"] == "ready"
    assert _blobs(indexing) == set()
