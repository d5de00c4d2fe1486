"""A fake OpenAI-compatible chat server on a real loopback socket, scripted per request.

It speaks `POST /v1/chat/completions` as OpenAI does: with `stream: true` a `text/event-stream` of
`data: {chat.completion.chunk}` lines ending in `data: [DONE]` (plus a usage chunk when the client
sends `stream_options.include_usage`); with `stream: false` one `chat.completion` object. Each
request takes the next scripted behaviour from a queue, or `default` when the queue is empty, and is
recorded (JSON body, headers, whether the client went away early) for the test to inspect::

    with FakeOpenAI() as fake:
        fake.enqueue(Status(500, retry_after=0.01), Reply(chunks=["営業", "時間は"], usage=(12, 5)))
        settings = ProviderSettings(type="openai", base_url=fake.base_url, api_key="sk-test")
        ...  # stream from OpenAIModel("fake", "gpt-test", settings)
        assert fake.requests[1].headers["authorization"] == "Bearer sk-test"

As a pytest fixture, register this module (`pytest_plugins = ["tests.fakes.openai_server"]` in the
root conftest) and ask for `fake_openai`, or wrap the context manager in a fixture of your own.
Standalone, for end-to-end tests of a whole server (serves `default` to every request)::

    python -m tests.fakes.openai_server --port 8911

Behaviours: `Reply`, and its faulty variants `Stall`, `Malformed`, `CloseAbruptly` (each cuts in
after `after_chunks` content deltas); `ToolCalls`; `Status`. A refused connection needs no fake:
point the client at a closed port.

Deliberate oddities: the server runs in its own thread and event loop, so a test's loop never
serves it and a stalled reply cannot block the client under test. `CloseAbruptly` raises inside
the response to make uvicorn drop the socket; the log record that produces is filtered out.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive

DEFAULT_CHUNKS = ("Hello", " from", " the", " fake", " model.")


@dataclass(frozen=True)
class Reply:
    """A normal streamed answer: one content delta per item of `chunks`."""

    chunks: Sequence[str] = DEFAULT_CHUNKS
    usage: tuple[int, int] | None = (10, 5)
    """`(prompt_tokens, completion_tokens)`, sent last if the client asked for usage."""
    split_bytes: bool = False
    """Write the body 1-2 bytes at a time, cutting multi-byte characters across writes."""
    chunk_delay: float = 0.0
    """Seconds between content deltas."""


@dataclass(frozen=True)
class Stall(Reply):
    """Go silent for `seconds` after `after_chunks` deltas (or before the headers), then go on."""

    after_chunks: int = 0
    seconds: float = 5.0
    before_headers: bool = False


@dataclass(frozen=True)
class Malformed(Reply):
    """After `after_chunks` deltas, send one bad `data:` line (by default not JSON), then go on."""

    after_chunks: int = 0
    data: str = '{"id": "chatcmpl-broken", "choices": [{"delta": '


@dataclass(frozen=True)
class CloseAbruptly(Reply):
    """After `after_chunks` deltas, drop the connection in the middle of the chunked body."""

    after_chunks: int = 0


@dataclass(frozen=True)
class FakeToolCall:
    name: str
    arguments: dict[str, Any] | str
    """A dict is sent JSON-encoded; a string is sent as is (to send broken JSON)."""
    id: str = "call_1"


@dataclass(frozen=True)
class ToolCalls:
    """The model asks for tools; each call's arguments stream in `fragment`-character pieces.

    By default, as OpenAI does: one call after the other, each opened by a delta with its `index`,
    `id` and name, then its argument pieces (with the `index` only).
    """

    calls: Sequence[FakeToolCall]
    fragment: int = 4
    usage: tuple[int, int] | None = (10, 5)
    text: Sequence[str] = ()
    """Content deltas sent before the calls."""
    interleave: bool = False
    """Open every call first, then send their argument pieces in turn (told apart by `index`)."""
    omit_index: bool = False
    """Leave `index` out of the tool-call deltas, as Gemini's OpenAI-compatible endpoint does."""


@dataclass(frozen=True)
class Status:
    """An HTTP error with an OpenAI-style `{"error": {...}}` body."""

    code: int
    message: str = "fake upstream error"
    retry_after: float | None = None
    """Seconds, sent as `retry-after-ms`; the SDK honours it, which keeps retry tests fast."""


Behaviour = Reply | ToolCalls | Status
Matcher = Callable[[dict[str, Any]], bool]
"""Picks requests by their JSON body, for `enqueue_for`."""


@dataclass
class RecordedRequest:
    body: dict[str, Any]
    headers: dict[str, str]
    """Lower-case names, as Starlette gives them."""
    disconnected: bool = False
    """The client went away before the reply ended."""
    client_port: int | None = None
    """The client's end of the connection: the same for requests on a reused connection."""


class FakeOpenAI:
    """The server. `start()`/`stop()`, or use it as a context manager; `base_url` ends in `/v1`."""

    def __init__(self, *, default: Behaviour = Reply(), host: str = "127.0.0.1", port: int = 0):
        self.default = self._initial_default = default
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Behaviour] = deque()
        self._routes: list[tuple[Matcher, deque[Behaviour]]] = []
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}/v1"

    def enqueue(self, *behaviours: Behaviour) -> None:
        """Script the next requests, in order."""
        self._queue.extend(behaviours)

    def enqueue_for(self, matches: Matcher, *behaviours: Behaviour) -> None:
        """Script the next requests whose body `matches`, in order, ahead of `enqueue`'s queue:
        for calls that race each other, such as a chat's title beside its answer."""
        self._routes.append((matches, deque(behaviours)))

    def reset(self) -> None:
        """Forget the script and the recorded requests, and restore `default`, between tests."""
        self._queue.clear()
        self._routes.clear()
        self.requests = []
        self.default = self._initial_default

    async def wait_for_disconnect(self) -> RecordedRequest:
        """The first request whose client went away early; bound it with `asyncio.timeout`."""
        while True:
            for recorded in self.requests:
                if recorded.disconnected:
                    return recorded
            await asyncio.sleep(0.01)

    def start(self) -> None:
        _quiet_abrupt_closes()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_config=None, log_level="warning", access_log=False, lifespan="off"
        )
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-openai", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 5.0
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        # force_exit: replies still stalled must not hold the test up until they end.
        self._server.should_exit = self._server.force_exit = True
        self._thread.join(timeout=5.0)
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        port = request.client.port if request.client is not None else None
        recorded = RecordedRequest(body=body, headers=dict(request.headers), client_port=port)
        self.requests.append(recorded)
        behaviour = _next_behaviour(self._routes, self._queue, self.default, body)
        if isinstance(behaviour, Status):
            headers = {}
            if behaviour.retry_after is not None:
                headers["retry-after-ms"] = str(int(behaviour.retry_after * 1000))
            error = {"message": behaviour.message, "type": "fake_error", "code": None}
            return JSONResponse({"error": error}, status_code=behaviour.code, headers=headers)
        if isinstance(behaviour, Stall) and behaviour.before_headers:
            await _pause(request, recorded, behaviour.seconds)
        model = str(body.get("model", "fake"))
        if not body.get("stream"):
            return JSONResponse(_completion(behaviour, model))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        steps = _steps(behaviour, model, include_usage)
        split = isinstance(behaviour, Reply) and behaviour.split_bytes
        return _RecordingStream(_write(steps, split), recorded)


def _next_behaviour(
    routes: list[tuple[Matcher, deque[Any]]], queue: deque[Any], default: Any, body: dict[str, Any]
) -> Any:
    """The first matching route's next behaviour, else the queue's next, else `default`."""
    for matches, scripted in routes:
        if scripted and matches(body):
            return scripted.popleft()
    return queue.popleft() if queue else default


class _AbruptClose(Exception):
    """Raised inside a streaming reply so that uvicorn drops the connection."""


@dataclass(frozen=True)
class _Pause:
    seconds: float


_Step = bytes | _Pause | _AbruptClose


class _RecordingStream(StreamingResponse):
    """Marks the request when the client disconnects before the body is done."""

    def __init__(self, content: AsyncIterator[bytes], recorded: RecordedRequest) -> None:
        super().__init__(content, media_type="text/event-stream")
        self._recorded = recorded

    async def listen_for_disconnect(self, receive: Receive) -> None:
        # Starlette cancels this listener once the body is complete, so returning means early.
        await super().listen_for_disconnect(receive)
        self._recorded.disconnected = True


async def _pause(request: Request, recorded: RecordedRequest, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            recorded.disconnected = True
            return
        await asyncio.sleep(0.01)


async def _write(steps: list[_Step], split_bytes: bool) -> AsyncIterator[bytes]:
    for step in steps:
        if isinstance(step, _Pause):
            await asyncio.sleep(step.seconds)
        elif isinstance(step, _AbruptClose):
            raise step
        elif split_bytes:
            for start in range(0, len(step), 2):
                yield step[start : start + 2]
                await asyncio.sleep(0)  # separate writes, not one coalesced buffer
        else:
            yield step


def _steps(behaviour: Reply | ToolCalls, model: str, include_usage: bool) -> list[_Step]:
    """The reply as SSE frames, with the behaviour's fault spliced in."""
    completion_id = f"chatcmpl-fake-{uuid.uuid4().hex[:12]}"

    def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse(_chunk(completion_id, model, [choice], include_usage))

    steps: list[_Step] = []
    if isinstance(behaviour, ToolCalls):
        for n, text in enumerate(behaviour.text):
            steps.append(
                frame({"role": "assistant", "content": text} if n == 0 else {"content": text})
            )
        for delta in _tool_call_deltas(behaviour):
            steps.append(frame(delta))
        steps.append(frame({}, "tool_calls"))
    else:
        for n, text in enumerate(behaviour.chunks):
            if n and behaviour.chunk_delay:
                steps.append(_Pause(behaviour.chunk_delay))
            steps.append(
                frame({"role": "assistant", "content": text} if n == 0 else {"content": text})
            )
        steps.append(frame({}, "stop"))
        _splice_fault(behaviour, steps)
    if include_usage and behaviour.usage is not None:
        steps.append(_sse(_chunk(completion_id, model, [], include_usage, behaviour.usage)))
    steps.append(b"data: [DONE]\n\n")
    return steps


def _tool_call_deltas(behaviour: ToolCalls) -> list[dict[str, Any]]:
    """One `delta` per frame: each call's head, then its argument pieces."""
    size = behaviour.fragment
    heads: list[dict[str, Any]] = []
    pieces: list[list[dict[str, Any]]] = []
    for index, call in enumerate(behaviour.calls):
        head = {"index": index, "id": call.id, "type": "function"}
        head["function"] = {"name": call.name, "arguments": ""}
        heads.append({"role": "assistant", "content": None, "tool_calls": [head]})
        arguments = _arguments(call)
        own = []
        for at in range(0, len(arguments), size):
            part = {"index": index, "function": {"arguments": arguments[at : at + size]}}
            own.append({"tool_calls": [part]})
        pieces.append(own)
    if behaviour.interleave:
        rounds = itertools.zip_longest(*pieces)
        deltas = [*heads, *(delta for turn in rounds for delta in turn if delta is not None)]
    else:
        deltas = [delta for head, own in zip(heads, pieces, strict=True) for delta in (head, *own)]
    if behaviour.omit_index:
        for delta in deltas:
            for part in delta["tool_calls"]:
                del part["index"]
    return deltas


def _splice_fault(reply: Reply, steps: list[_Step]) -> None:
    if not isinstance(reply, Stall | Malformed | CloseAbruptly):
        return
    frames = [i for i, step in enumerate(steps) if isinstance(step, bytes)]
    at = frames[min(reply.after_chunks, len(reply.chunks))]
    if isinstance(reply, Stall):
        if not reply.before_headers:
            steps.insert(at, _Pause(reply.seconds))
    elif isinstance(reply, Malformed):
        # surrogateescape: a test can send bytes that are not UTF-8 ("\udcff" is 0xFF).
        steps.insert(at, f"data: {reply.data}\n\n".encode("utf-8", "surrogateescape"))
    else:
        del steps[at:]
        steps.append(_AbruptClose())


def _chunk(
    completion_id: str,
    model: str,
    choices: list[dict[str, Any]],
    include_usage: bool,
    usage: tuple[int, int] | None = None,
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": choices,
    }
    if include_usage:  # OpenAI sends `usage: null` on every chunk but the last
        chunk["usage"] = None if usage is None else _usage(usage)
    return chunk


def _completion(behaviour: Reply | ToolCalls, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    if isinstance(behaviour, ToolCalls):
        message["content"] = "".join(behaviour.text) or None
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": _arguments(call)},
            }
            for call in behaviour.calls
        ]
        finish = "tool_calls"
    else:
        message["content"] = "".join(behaviour.chunks)
        finish = "stop"
    return {
        "id": f"chatcmpl-fake-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(behaviour.usage or (0, 0)),
    }


def _arguments(call: FakeToolCall) -> str:
    if isinstance(call.arguments, str):
        return call.arguments
    return json.dumps(call.arguments, ensure_ascii=False)


def _usage(usage: tuple[int, int]) -> dict[str, int]:
    prompt, completion = usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


class _DropAbruptCloses(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, _AbruptClose)


def _quiet_abrupt_closes() -> None:
    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropAbruptCloses) for f in error_log.filters):
        error_log.addFilter(_DropAbruptCloses())


@pytest.fixture(scope="session")
def _fake_openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_openai(_fake_openai_server: FakeOpenAI) -> FakeOpenAI:
    """One server for the session (starting one takes ~0.2 s), reset for each test."""
    _fake_openai_server.reset()
    return _fake_openai_server


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI-compatible chat API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8911)
    args = parser.parse_args(argv)
    fake = FakeOpenAI(host=args.host, port=args.port)
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="info", lifespan="off")


if __name__ == "__main__":
    main()
