"""What the client's unit tests share: a fake API behind `httpx.MockTransport`, SSE bodies that
can break off, and the few helpers that let one test body drive `Client` and `AsyncClient` alike.

A test takes the `kind` fixture ("sync" or "async") and writes `await resolve(client.chats.list())`
— a sync call's value passes through, an async one is awaited — so both suites are the same code.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from kaiwa.client import AsyncClient, AsyncStream, Client, KaiwaError, ResumePolicy, Stream
from kaiwa.protocol import (
    Event,
    OutputTextCompleted,
    OutputTextDelta,
    ResponseCreated,
    ResponseError,
    TokenUsage,
    encode_frame,
)
from kaiwa.protocol.sse import DONE, PING

BASE_URL = "http://kaiwa.test"
KEY = "kw-test-key"
CHAT_ID = 12
RESPONSE_ID = "3f0c2a7e-1b2c-4d5e-8f90-a1b2c3d4e5f6"
AGENT_ID = "7d9a3c1e-2b4f-4a6d-9e8c-0f1e2d3c4b5a"
ANSWER = ["営業時間は", "平日の", "9時から", "18時までです。"]
IDS: dict[str, Any] = {"response_id": RESPONSE_ID, "chat_id": CHAT_ID}
#: No pause between reconnections: the tests are about what is sent, not when.
FAST = ResumePolicy(attempts=3, backoff=0.0)

Handler = Callable[[httpx.Request], httpx.Response]
AnyClient = Client | AsyncClient


# -- envelopes and events --------------------------------------------------------------------------


def envelope(data: Any, *, pagination: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"data": data, "message": None, "error_code": 0, "pagination": pagination}


def ok(data: Any, **kwargs: Any) -> httpx.Response:
    return httpx.Response(200, json=envelope(data, **kwargs))


def error(status: int, code: int, message: str, **headers: str) -> httpx.Response:
    body = {"data": None, "message": message, "error_code": code, "pagination": None}
    return httpx.Response(status, json=body, headers=headers)


def answer_events(pieces: list[str] = ANSWER) -> list[Event]:
    """A whole answer: created, one delta per piece, completed."""
    created = ResponseCreated(
        **IDS,
        agent_id=AGENT_ID,
        model="scripted/x",
        conversation_group_id="cvg-1",
        user_conversation_id=41,
    )
    deltas: list[Event] = [OutputTextDelta(**IDS, delta=piece) for piece in pieces]
    completed = OutputTextCompleted(
        **IDS, final_text="".join(pieces), usage=TokenUsage(total_tokens=9, total_calls=1)
    )
    return [created, *deltas, completed]


def failure(code: int = 10009, message: str = "The model provider failed") -> ResponseError:
    return ResponseError(**IDS, code=code, message=message)


def frames(events: list[Event], *, first_id: int = 1, done: bool = True) -> bytes:
    """The body the server writes: a ping, one frame per event (ids from `first_id`), [DONE]."""
    body = PING
    for offset, event in enumerate(events):
        body += encode_frame(first_id + offset, event.type, event.model_dump_json())
    return body + (DONE if done else b"")


def frame_ends(body: bytes) -> list[int]:
    """The offsets just after the opening ping (index 0, as if it were a frame: it is one line,
    with no blank line of its own) and after each frame's blank line (index n: the n-th frame)."""
    ends, start = [], 0
    if body.startswith(PING):
        start = len(PING)
        ends.append(start)
    while (found := body.find(b"\n\n", start)) != -1:
        start = found + 2
        ends.append(start)
    return ends


# -- bodies that break off -------------------------------------------------------------------------


class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body in set chunks, then optionally a transport error (a cut connection)."""

    def __init__(self, chunks: list[bytes], *, fail: Exception | None = None) -> None:
        self.chunks = chunks
        self.fail = fail
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.fail is not None:
            raise self.fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.fail is not None:
            raise self.fail

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def sse_response(
    body: bytes | Body, *, response_id: str | None = RESPONSE_ID, status: int = 200
) -> httpx.Response:
    headers = {"content-type": "text/event-stream; charset=utf-8"}
    if response_id is not None:
        headers["x-kaiwa-response-id"] = response_id
    stream = body if isinstance(body, Body) else Body([body])
    return httpx.Response(status, headers=headers, stream=stream)


def cut(body: bytes, at: int) -> Body:
    """`body` up to byte `at`, then a reset connection."""
    return Body([body[:at]], fail=httpx.ReadError("connection reset by peer"))


# -- the fake API ----------------------------------------------------------------------------------


@dataclass
class FakeApi:
    """Answers by (method, path) from queues of replies; the last reply of a queue repeats.

    A reply is an `httpx.Response`, an exception to raise (a transport failure), or a function
    of the request.
    """

    routes: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, path: str, *replies: Any) -> FakeApi:
        self.routes.setdefault((method, "/api/v1" + path), []).extend(replies)
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        queue = self.routes.get((request.method, request.url.path))
        if not queue:
            return error(404, 10003, f"no route for {request.method} {request.url.path}")
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            reply = reply(request)
        assert isinstance(reply, httpx.Response)
        return reply

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if (r.method, r.url.path) == (method, "/api/v1" + path)]

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


def make_client(kind: str, api: Handler, **options: Any) -> AnyClient:
    options.setdefault("resume", FAST)
    options.setdefault("base_url", BASE_URL)
    transport = httpx.MockTransport(api)
    if kind == "sync":
        return Client(api_key=KEY, transport=transport, **options)
    return AsyncClient(api_key=KEY, transport=transport, **options)


# -- one test body for both kinds ------------------------------------------------------------------


async def resolve(value: Any) -> Any:
    """A sync call's value as it is; an async call's, awaited."""
    return await value if inspect.isawaitable(value) else value


async def collect(iterator: Iterator[Any] | AsyncIterator[Any]) -> list[Any]:
    if isinstance(iterator, AsyncIterator):
        return [item async for item in iterator]
    return list(iterator)


@contextlib.asynccontextmanager
async def opened(stream: Stream | AsyncStream) -> AsyncIterator[None]:
    """`with stream:` or `async with stream:`, whichever it takes."""
    if isinstance(stream, Stream):
        with stream:
            yield
    else:
        async with stream:
            yield


async def step(stream: Stream | AsyncStream) -> Event:
    """The next event: `next(stream)` or `await anext(stream)`."""
    return await anext(stream) if isinstance(stream, AsyncStream) else next(stream)


@dataclass
class Read:
    """What a caller got from a stream: the events handed out, then the error or the text."""

    events: list[Event]
    error: KaiwaError | None
    text: str | None
    stream: Stream | AsyncStream


async def read(stream: Stream | AsyncStream) -> Read:
    """Enter the stream, iterate it to its end, then ask for `final_text()`."""
    events: list[Event] = []
    try:
        if isinstance(stream, Stream):
            with stream:
                for event in stream:
                    events.append(event)
                text = stream.final_text()
        else:
            async with stream:
                async for event in stream:
                    events.append(event)
                text = await stream.final_text()
    except KaiwaError as exc:
        return Read(events, exc, None, stream)
    return Read(events, None, text, stream)


async def close(client: AnyClient) -> None:
    await resolve(client.close())
