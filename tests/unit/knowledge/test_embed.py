"""Embedders: the local model and an OpenAI-compatible endpoint (a fake one on loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from tests.fakes.embeddings_server import Failure, FakeEmbeddings

from kaiwa.config import EmbeddingSettings
from kaiwa.knowledge.embed import (
    EmbeddingError,
    LocalEmbedder,
    OpenAIEmbedder,
    build_embedder,
    normalise,
)


@pytest.fixture
def fake_embeddings() -> Iterator[FakeEmbeddings]:
    with FakeEmbeddings() as fake:
        yield fake


def test_normalise_makes_rows_unit_length_and_leaves_zero_rows_alone() -> None:
    matrix = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(matrix, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)


def test_build_embedder_follows_the_provider() -> None:
    assert build_embedder(EmbeddingSettings(provider="none")) is None
    assert isinstance(build_embedder(EmbeddingSettings(provider="auto")), LocalEmbedder)
    assert isinstance(build_embedder(EmbeddingSettings(provider="local")), LocalEmbedder)
    remote = build_embedder(EmbeddingSettings(provider="openai", model="m"))
    assert isinstance(remote, OpenAIEmbedder)
    assert remote.name == "openai/m"


async def test_openai_embedder_batches_sorts_by_index_and_normalises(
    fake_embeddings: FakeEmbeddings,
) -> None:
    embedder = OpenAIEmbedder(
        base_url=fake_embeddings.base_url, model="fake-embed", api_key="sk-test", batch_size=2
    )
    try:
        assert embedder.dimensions == 0
        texts = ["解約の方法", "営業時間", "cancel my plan", "解約の方法"]
        vectors = await embedder.embed(texts, kind="passage")
    finally:
        await embedder.aclose()
    assert vectors.shape == (4, fake_embeddings.dimensions)
    assert embedder.dimensions == fake_embeddings.dimensions
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[3])
    assert [request.body["input"] for request in fake_embeddings.requests] == [
        texts[:2],
        texts[2:],
    ]
    assert fake_embeddings.requests[0].body["model"] == "fake-embed"
    assert fake_embeddings.requests[0].headers["authorization"] == "Bearer sk-test"


@pytest.mark.parametrize(
    ("failure", "message"),
    [(Failure(500), "HTTP 500"), (Failure(malformed=True), "malformed")],
)
async def test_openai_embedder_errors_are_embedding_errors(
    fake_embeddings: FakeEmbeddings, failure: Failure, message: str
) -> None:
    fake_embeddings.enqueue(failure)
    embedder = OpenAIEmbedder(base_url=fake_embeddings.base_url, model="m")
    try:
        with pytest.raises(EmbeddingError, match=message):
            await embedder.embed(["x"], kind="query")
        assert (await embedder.embed(["x"], kind="query")).shape == (1, 64)
    finally:
        await embedder.aclose()


async def test_openai_embedder_unreachable_is_an_embedding_error() -> None:
    embedder = OpenAIEmbedder(base_url="http://127.0.0.1:9/v1", model="m", timeout=2)
    try:
        with pytest.raises(EmbeddingError, match="unreachable"):
            await embedder.embed(["x"], kind="query")
    finally:
        await embedder.aclose()


async def test_local_embedder_ranks_a_japanese_paraphrase_and_tells_queries_from_passages() -> None:
    embedder = LocalEmbedder()
    try:
        passages = await embedder.embed(
            [
                "定期便はマイページからいつでも解約できます。解約手数料はかかりません。",
                "渋谷店の営業時間は午前8時から午後8時までです。",
                "Store beans in an airtight container away from light.",
            ],
            kind="passage",
        )
        query = await embedder.embed(["サブスクをキャンセルしたい"], kind="query")
        as_passage = await embedder.embed(["サブスクをキャンセルしたい"], kind="passage")
    finally:
        await embedder.aclose()
    assert passages.shape == (3, embedder.dimensions)
    assert passages.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(passages, axis=1), 1.0, rtol=1e-5)
    assert int(np.argmax(passages @ query[0])) == 0
    assert not np.allclose(query, as_passage)
    assert (await LocalEmbedder().embed([], kind="query")).shape == (0, 384)
