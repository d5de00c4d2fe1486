"""A fake Anthropic Messages API on a real loopback socket, scripted per request.

It speaks `POST /v1/messages` as Anthropic does. With `stream: true` it answers with named SSE
events: `message_start` (input usage), then per content block `content_block_start`,
`content_block_delta` (`text_delta`, or `input_json_delta` for a `tool_use` block) and
`content_block_stop`, with a `ping` after the first block starts; then `message_delta` (stop
reason, output usage) and `message_stop`. A failure inside the stream is `event: error`; one
before it is a status with `{"type": "error", "error": {"type": ..., "message": ...}}`. Without
`stream` it answers with one `message` object.

Each request must carry `anthropic-version` and a key (`x-api-key`, or `authorization: Bearer`,
which is what the 2.x SDK sends); with `api_key` set, only that key. Each takes the next
scripted behaviour from a queue, or `default`, and is recorded for the test to inspect::

    with FakeAnthropic() as fake:
        fake.enqueue(Status(529, retry_after=0.01), Reply(chunks=["営業", "時間は"], usage=(12, 5)))
        settings = ProviderSettings(type="anthropic", base_url=fake.base_url, api_key="sk-ant")
        ...  # stream from AnthropicModel("claude", "claude-test", settings)
        assert fake.requests[1].api_key == "sk-ant"

As a pytest fixture, ask for `fake_anthropic` (registered in the root conftest). Standalone, for a
whole server by hand (serves `default` to every request)::

    python -m tests.fakes.anthropic_server --port 8912

Behaviours: `Reply`, and its faulty variants `Stall`, `Malformed`, `CloseAbruptly` and
`ErrorEvent` (each cuts in after `after_chunks` text deltas; 0 is right after `message_start`);
`ToolUse`; `Status`. The threaded server is `tests.fakes.web_server.LoopbackServer`; the
streaming helpers (pauses, abrupt closes, disconnect recording) are the OpenAI fake's.

`streamed_body(behaviour)` is the body the server would stream, as bytes, for a test that cuts
it into reads itself: a socket does not promise where one read ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.fakes.openai_server import (
    Matcher,
    _AbruptClose,
    _next_behaviour,
    _Pause,
    _pause,
    _quiet_abrupt_closes,
    _RecordingStream,
    _Step,
    _write,
)
from tests.fakes.openai_server import (
    RecordedRequest as _OpenAIRecordedRequest,
)
from tests.fakes.web_server import LoopbackServer

DEFAULT_CHUNKS = ("Hello", " from", " the", " fake", " Claude.")
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Reply:
    """A normal streamed answer: one text block, one `text_delta` per item of `chunks`."""

    chunks: Sequence[str] = DEFAULT_CHUNKS
    usage: tuple[int, int] = (10, 5)
    """`(input_tokens, output_tokens)`: input in `message_start`, output in `message_delta`."""
    cache_read: int = 0
    """`cache_read_input_tokens` in `message_start`, on top of `usage[0]`."""
    stop_reason: str = "end_turn"
    split_bytes: bool = False
    """Write the body 1-2 bytes at a time, cutting multi-byte characters across writes."""
    chunk_delay: float = 0.0
    """Seconds between text deltas."""


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
    event: str = "content_block_delta"
    data: str = '{"type": "content_block_delta", "index": 0, "delta": '


@dataclass(frozen=True)
class CloseAbruptly(Reply):
    """After `after_chunks` deltas, drop the connection in the middle of the chunked body."""

    after_chunks: int = 0


@dataclass(frozen=True)
class ErrorEvent(Reply):
    """After `after_chunks` deltas, send `event: error` and end the stream, as the API does."""

    after_chunks: int = 0
    error_type: str = "overloaded_error"
    message: str = "Overloaded"


@dataclass(frozen=True)
class FakeToolUse:
    name: str
    input: dict[str, Any] | str
    """A dict is sent JSON-encoded; a string is sent as is (to send broken JSON)."""
    id: str = "toolu_01"


@dataclass(frozen=True)
class ToolUse:
    """The model asks for tools: optional text first, then one `tool_use` block per call, its
    input JSON streamed in `fragment`-character `input_json_delta`s."""

    calls: Sequence[FakeToolUse]
    text: Sequence[str] = ()
    fragment: int = 4
    usage: tuple[int, int] = (10, 5)


@dataclass(frozen=True)
class Status:
    """An HTTP error with an Anthropic-style body; `error_type` defaults from the code."""

    code: int
    message: str = "fake upstream error"
    error_type: str | None = None
    retry_after: float | None = None
    """Seconds, sent as `retry-after-ms`; the SDK honours it, which keeps retry tests fast."""


Behaviour = Reply | ToolUse | Status


@dataclass
class RecordedRequest(_OpenAIRecordedRequest):
    @property
    def api_key(self) -> str | None:
        """The key, from `x-api-key` or a Bearer `authorization`."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None


class FakeAnthropic(LoopbackServer):
    """The server. `start()`/`stop()`, or use it as a context manager; `base_url` has no `/v1`."""

    def __init__(
        self, *, default: Behaviour = Reply(), api_key: str | None = None, port: int = 0
    ) -> None:
        super().__init__(
            Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])]),
            name="fake-anthropic",
            port=port,
        )
        self.default = self._initial_default = default
        self.api_key = api_key
        """The only key accepted; None accepts any."""
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Behaviour] = deque()
        self._routes: list[tuple[Matcher, deque[Behaviour]]] = []

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
        super().start()

    async def _messages(self, request: Request) -> Response:
        body = await request.json()
        recorded = RecordedRequest(body=body, headers=dict(request.headers))
        self.requests.append(recorded)
        key = recorded.api_key
        if not key or (self.api_key is not None and key != self.api_key):
            return _error_response(Status(401, "invalid x-api-key"))
        if "anthropic-version" not in recorded.headers:
            return _error_response(Status(400, "anthropic-version: header is required"))
        behaviour = _next_behaviour(self._routes, self._queue, self.default, body)
        if isinstance(behaviour, Status):
            return _error_response(behaviour)
        if isinstance(behaviour, Stall) and behaviour.before_headers:
            await _pause(request, recorded, behaviour.seconds)
        model = str(body.get("model", "claude-fake"))
        if not body.get("stream"):
            return JSONResponse(_message(behaviour, model))
        split = isinstance(behaviour, Reply) and behaviour.split_bytes
        return _RecordingStream(_write(_steps(behaviour, model), split), recorded)


def _error_response(status: Status) -> JSONResponse:
    headers = {"request-id": f"req_fake_{uuid.uuid4().hex[:12]}"}
    if status.retry_after is not None:
        headers["retry-after-ms"] = str(int(status.retry_after * 1000))
    error_type = status.error_type or ERROR_TYPES.get(status.code, "api_error")
    body = {"type": "error", "error": {"type": error_type, "message": status.message}}
    return JSONResponse(body, status_code=status.code, headers=headers)


def _steps(behaviour: Reply | ToolUse, model: str) -> list[_Step]:
    """The reply as SSE frames, with the behaviour's fault spliced in."""
    cache_read = behaviour.cache_read if isinstance(behaviour, Reply) else 0
    input_tokens, output_tokens = behaviour.usage
    usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cache_read,
        "output_tokens": 1,
    }
    message = _message_head(model) | {"content": [], "usage": usage}
    steps: list[_Step] = [_sse("message_start", {"type": "message_start", "message": message})]
    text_frames: list[int] = []
    texts = behaviour.chunks if isinstance(behaviour, Reply) else behaviour.text
    index = 0
    if texts:
        steps.append(_block_start(index, {"type": "text", "text": ""}))
        steps.append(_sse("ping", {"type": "ping"}))
        for n, text in enumerate(texts):
            if n and isinstance(behaviour, Reply) and behaviour.chunk_delay:
                steps.append(_Pause(behaviour.chunk_delay))
            text_frames.append(len(steps))
            steps.append(_delta(index, {"type": "text_delta", "text": text}))
        text_frames.append(len(steps))  # a fault after the last delta goes before the stop
        steps.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    stop_reason = behaviour.stop_reason if isinstance(behaviour, Reply) else "tool_use"
    if isinstance(behaviour, ToolUse):
        for call in behaviour.calls:
            block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            steps.append(_block_start(index, block))
            if not texts and index == 0:
                steps.append(_sse("ping", {"type": "ping"}))
            arguments = _input_json(call)
            for start in range(0, len(arguments), behaviour.fragment):
                piece = arguments[start : start + behaviour.fragment]
                steps.append(_delta(index, {"type": "input_json_delta", "partial_json": piece}))
            steps.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
            index += 1
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    steps.append(
        _sse(
            "message_delta",
            {"type": "message_delta", "delta": delta, "usage": {"output_tokens": output_tokens}},
        )
    )
    steps.append(_sse("message_stop", {"type": "message_stop"}))
    if isinstance(behaviour, Reply):
        _splice_fault(behaviour, steps, [1, *text_frames[1:]] if text_frames else [1])
    return steps


def streamed_body(behaviour: Reply | ToolUse, model: str = "claude-test") -> bytes:
    """The streamed body of `behaviour` in one piece: its pauses left out, cut where the server
    would drop the connection."""
    body: list[bytes] = []
    for step in _steps(behaviour, model):
        if isinstance(step, _AbruptClose):
            break
        if isinstance(step, bytes):
            body.append(step)
    return b"".join(body)


def _splice_fault(reply: Reply, steps: list[_Step], positions: list[int]) -> None:
    """`positions[k]`: where a fault after `k` text deltas goes (0: right after message_start)."""
    if not isinstance(reply, Stall | Malformed | CloseAbruptly | ErrorEvent):
        return
    at = positions[min(reply.after_chunks, len(positions) - 1)]
    if isinstance(reply, Stall):
        if not reply.before_headers:
            steps.insert(at, _Pause(reply.seconds))
    elif isinstance(reply, Malformed):
        steps.insert(at, f"event: {reply.event}\ndata: {reply.data}\n\n".encode())
    elif isinstance(reply, ErrorEvent):
        error = {"type": reply.error_type, "message": reply.message}
        del steps[at:]
        steps.append(_sse("error", {"type": "error", "error": error}))
    else:
        del steps[at:]
        steps.append(_AbruptClose())


def _message_head(model: str) -> dict[str, Any]:
    return {
        "id": f"msg_fake_{uuid.uuid4().hex[:12]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
    }


def _message(behaviour: Reply | ToolUse, model: str) -> dict[str, Any]:
    texts = behaviour.chunks if isinstance(behaviour, Reply) else behaviour.text
    content: list[dict[str, Any]] = [{"type": "text", "text": "".join(texts)}] if texts else []
    if isinstance(behaviour, ToolUse):
        content += [
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}
            for call in behaviour.calls
        ]
    stop_reason = behaviour.stop_reason if isinstance(behaviour, Reply) else "tool_use"
    input_tokens, output_tokens = behaviour.usage
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    return _message_head(model) | {"content": content, "stop_reason": stop_reason, "usage": usage}


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    return _sse(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _sse(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def _input_json(call: FakeToolUse) -> str:
    if isinstance(call.input, str):
        return call.input
    return json.dumps(call.input, ensure_ascii=False)


def _sse(event: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, ensure_ascii=False)
    return f"event: {event}\ndata: {data}\n\n".encode()


@pytest.fixture(scope="session")
def _fake_anthropic_server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake_anthropic(_fake_anthropic_server: FakeAnthropic) -> FakeAnthropic:
    """One server for the session (starting one takes ~0.2 s), reset for each test."""
    _fake_anthropic_server.reset()
    return _fake_anthropic_server


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Anthropic Messages API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8912)
    args = parser.parse_args(argv)
    fake = FakeAnthropic(port=args.port)
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="info", lifespan="off")


if __name__ == "__main__":
    main()
