"""A fake OpenAI-compatible embeddings server on a real loopback socket.

`POST /v1/embeddings` with `{"model", "input": [texts]}` answers as OpenAI does: `{"object":
"list", "data": [{"object": "embedding", "index": i, "embedding": [...]}], "model", "usage"}`. The
vectors are deterministic and mean something: each is the hashed bag of the text's character
pairs over `dimensions` dimensions (not normalised, as some servers send them), so texts sharing
wording are near each other. Requests are recorded; `enqueue` scripts failures::

    with FakeEmbeddings() as fake:
        fake.enqueue(Failure(500))
        settings = EmbeddingSettings(provider="openai", base_url=fake.base_url, model="fake-embed")
        ...
        assert fake.requests[0].body["input"] == ["passage text"]

As in `tests.fakes.openai_server`, the server runs in its own thread and event loop.
"""

from __future__ import annotations

import socket
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass(frozen=True)
class Failure:
    """An HTTP error with an OpenAI-style body, or (`malformed`) a 200 that is not embeddings."""

    code: int = 500
    malformed: bool = False


@dataclass
class RecordedRequest:
    body: dict[str, Any]
    headers: dict[str, str]


def fake_vector(text: str, dimensions: int) -> list[float]:
    """The hashed bag of `text`'s lower-cased character pairs; never all zeros."""
    vector = [0.0] * dimensions
    folded = "".join(text.lower().split())
    for start in range(max(len(folded) - 1, 1)):
        pair = folded[start : start + 2]
        vector[zlib.crc32(pair.encode()) % dimensions] += 1.0
    if not any(vector):
        vector[0] = 1.0
    return vector


class FakeEmbeddings:
    """The server; `base_url` ends in `/v1`."""

    def __init__(self, *, dimensions: int = 64, host: str = "127.0.0.1") -> None:
        self.dimensions = dimensions
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Failure] = deque()
        self._host = host
        self._port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[Route("/v1/embeddings", self._embeddings, methods=["POST"])])

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}/v1"

    def enqueue(self, *failures: Failure) -> None:
        """Fail the next requests, in order; later ones succeed again."""
        self._queue.extend(failures)

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_config=None, log_level="warning", access_log=False, lifespan="off"
        )
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-embeddings", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 5.0
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake embeddings server did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = self._server.force_exit = True
        self._thread.join(timeout=5.0)
        self._server = self._thread = None

    def __enter__(self) -> FakeEmbeddings:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _embeddings(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(RecordedRequest(body=body, headers=dict(request.headers)))
        if self._queue:
            failure = self._queue.popleft()
            if failure.malformed:
                return JSONResponse({"object": "list", "data": "nope"})
            error = {"message": "fake embeddings error", "type": "fake_error", "code": None}
            return JSONResponse({"error": error}, status_code=failure.code)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": index, "embedding": fake_vector(text, self.dimensions)}
            for index, text in enumerate(texts)
        ]
        # Reversed, as the API does not promise order: clients must sort by `index`.
        return JSONResponse(
            {
                "object": "list",
                "data": data[::-1],
                "model": body.get("model", "fake"),
                "usage": {"prompt_tokens": 0, "total_tokens": 0},
            }
        )
