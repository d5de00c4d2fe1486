"""The public surface other packages build on."""

from __future__ import annotations

import dataclasses

from kaiwa.knowledge import embed, index, inflate, ingest, pdf, search


def test_public_names() -> None:
    assert set(ingest.__all__) == {
        "DEFAULT_LIMITS",
        "SUPPORTED_TYPES",
        "DocumentError",
        "DocumentTooLarge",
        "Extracted",
        "InflateLimits",
        "IngestError",
        "UnsupportedType",
        "chunk_text",
        "detect_type",
        "extract_text",
    }
    assert {"Hit", "KnowledgeSearch"} <= set(search.__all__)
    assert {"Embedder", "build_embedder", "EmbeddingError"} <= set(embed.__all__)
    assert {"Indexer", "Upload"} <= set(index.__all__)
    assert set(inflate.__all__) == {"CHUNK", "Budget", "InflateLimits", "TooLarge", "check_zip"}
    assert pdf.__all__ == ["read_pdf"]


def test_hit_and_extracted_are_frozen_records() -> None:
    assert [field.name for field in dataclasses.fields(search.Hit)] == [
        "document_id",
        "title",
        "chunk_id",
        "snippet",
        "score",
        "text",
        "knowledge_base_id",
    ]
    assert [field.name for field in dataclasses.fields(ingest.Extracted)] == [
        "title",
        "text",
        "content_type",
    ]
    assert search.Hit.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert ingest.Extracted.__dataclass_params__.frozen  # type: ignore[attr-defined]
