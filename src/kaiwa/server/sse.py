"""The SSE writer: follows a response's event log and turns it into an HTTP stream.

It sends a `: ping` comment line first (so headers and the first byte go out at once) and every
`ping_interval` seconds of silence, the log's pre-encoded frames as they arrive, and `[DONE]`
last — always. A ping is one line with no blank line after it (`kaiwa.protocol.sse.PING`): the
blank line that ends a frame is the only one on the wire. If the log itself goes silent for
longer than the idle timeout (its producer is gone), the writer ends the stream with a 10008
error of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Protocol

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kaiwa.bus import EventLog
from kaiwa.protocol import ErrorCode, ResponseError
from kaiwa.protocol.sse import DONE, PING, encode_frame

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
_DETACH = "kaiwa.detach"
"""The scope key where `DetachedBodies` takes a stream's body."""
_ASGI_KEYS = (
    "type",
    "asgi",
    "http_version",
    "server",
    "client",
    "scheme",
    "method",
    "root_path",
    "path",
    "raw_path",
    "query_string",
    "headers",
    "extensions",
    "state",
)
"""An HTTP scope's keys in the ASGI spec: what a server may read once the app has returned."""
# How long past the producer's own idle timeout the writer waits before giving up on the log.
_GRACE = 5.0


class OpenStreams(Protocol):
    """A count of the streams open (a Prometheus gauge): one more at the start, one less at
    the end; nothing per event."""

    def inc(self) -> None: ...

    def dec(self) -> None: ...


async def follow(
    log: EventLog,
    response_id: str,
    chat_id: int,
    *,
    after: int = 0,
    ping_interval: float,
    idle_timeout: float,
    on_disconnect: Callable[[], object] | None = None,
    open_streams: OpenStreams | None = None,
) -> AsyncGenerator[bytes, None]:
    """The stream's body: frames after `after`, live, to `[DONE]`.

    `on_disconnect` runs when the client goes away before the end (the body is closed early).
    Each read's frames go out as one chunk: a reader that fell behind catches up in one write.
    `open_streams` counts this stream while it is open.
    """
    ended = False
    if open_streams is not None:
        open_streams.inc()
    try:
        yield PING
        cursor = after
        silent = 0.0
        while True:
            read = await log.read(response_id, cursor, wait=ping_interval)
            if read is None:
                message = "This response's events have expired"
                error = _error_frame(cursor + 1, response_id, chat_id, ErrorCode.NOT_FOUND, message)
                yield error + DONE
                ended = True
                return
            frames = read.frames
            if frames:
                silent = 0.0
                cursor = read.last
                body = frames[0] if len(frames) == 1 else b"".join(frames)
                if read.finished:
                    yield body + DONE
                    ended = True
                    return
                yield body
                continue
            if read.finished:
                yield DONE
                ended = True
                return
            silent += ping_interval
            if silent > idle_timeout + _GRACE:
                message = "No event for too long: the response timed out"
                error = _error_frame(cursor + 1, response_id, chat_id, ErrorCode.TIMEOUT, message)
                yield error + DONE
                ended = True
                return
            yield PING
    finally:
        if open_streams is not None:
            open_streams.dec()
        if not ended and on_disconnect is not None:
            on_disconnect()


def _error_frame(
    event_id: int, response_id: str, chat_id: int, code: ErrorCode, message: str
) -> bytes:
    """An error the writer reports itself, when the log cannot: numbered after the last frame
    this reader saw, so a client's cursor stays monotonic."""
    event = ResponseError(response_id=response_id, chat_id=chat_id, message=message, code=code)
    return encode_frame(event_id, event.type, event.model_dump_json())


class EventStream(Response):
    """A `text/event-stream` response written by the request's own task.

    Starlette's `StreamingResponse` writes from a task of its own beside one that waits for the
    client to leave; its first frames then wait a turn of the event loop behind everything
    else that is ready — first of all the producer the request has just started, whose model
    request takes a millisecond or two to build. Here the request's task writes at once, and a
    small watcher task cancels it when the client goes away (the body's `finally` runs then,
    e.g. `follow`'s `on_disconnect`).

    Under `DetachedBodies` (kaiwa's outermost layer), the status line and headers go out
    through every layer, then the body is left to that layer and written there, after the
    layers in between (Starlette's and FastAPI's, routing, dependency scopes, CORS, the body
    limit, the request id) have returned: an open stream no longer holds their frames, its
    request and parsed body, and each frame skips their `send` wrappers. Only the start of a
    response is theirs to change.
    """

    media_type = "text/event-stream; charset=utf-8"

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        headers: Mapping[str, str],
        release: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """`release` is awaited once, as soon as the body has ended (before the response's end
        reaches the client) or the client has left: a rate limiter's slot, say."""
        self.body_iterator = body
        self.status_code = 200
        self.background = None
        self.release = release
        self.init_headers(headers)
        self._gone = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        detach: Callable[[EventStream], None] | None = scope.get(_DETACH)
        if detach is None:
            await self.write(receive, send, started=False)
            return
        try:
            await send(self._start())
        except BaseException:
            await self.abandon()
            raise
        detach(self)

    def _start(self) -> Message:
        start: Message = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
        self.raw_headers = []  # sent: an open stream need not keep them
        return start

    async def write(self, receive: Receive, send: Send, *, started: bool = True) -> None:
        """The body, to its end or the client's; after the start, unless `started` is False.
        Called by `DetachedBodies` for a stream that left its body to it."""
        writer = asyncio.current_task()
        assert writer is not None
        watcher = asyncio.create_task(self._watch(receive, writer))
        try:
            if not started:
                await send(self._start())
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await self._release()  # a client that saw the end may ask again at once
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # Ours (the client left): the response is over. Anyone else's: pass it on.
            if not self._gone or writer.uncancel() > 0:
                raise
        finally:
            # Synchronous, so the watcher can no longer cancel this task once it is past here.
            watcher.cancel()
            await self.abandon()

    async def _watch(self, receive: Receive, writer: asyncio.Task[object]) -> None:
        # A method, not a closure: an open stream keeps no function and cells for it.
        while (await receive())["type"] != "http.disconnect":
            continue
        self._gone = True
        writer.cancel()

    async def abandon(self) -> None:
        """Release and close the body without writing it (also the end of every stream)."""
        try:
            await self._release()
        finally:
            await self.body_iterator.aclose()

    async def _release(self) -> None:
        release, self.release = self.release, None
        if release is not None:
            await release()


class DetachedBodies:
    """The outermost layer of kaiwa's app (`kaiwa.server.app`): `app` answers; an
    `EventStream` among its layers sends its start through all of them and leaves its body
    here, where it is written with the server's own `send` (past the start no wrapper has
    anything left to do) once every layer inside has returned."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        streams: list[EventStream] = []
        scope[_DETACH] = streams.append
        try:
            await self.app(scope, receive, send)
        except BaseException:
            if streams:
                await streams.pop().abandon()
            raise
        finally:
            del scope[_DETACH]
        if not streams:
            return
        # What the layers that returned put in the scope (the app, the route, FastAPI's spent
        # exit stacks, ~3 KB) would stay for as long as the stream: uvicorn keeps the scope.
        # Cleared, not deleted key by key, so that the dict gives back its grown table too.
        kept = {key: scope[key] for key in _ASGI_KEYS if key in scope}
        scope.clear()
        scope.update(kept)
        await streams.pop().write(receive, send)


def sse_response(
    body: AsyncGenerator[bytes, None],
    response_id: str,
    release: Callable[[], Awaitable[object]] | None = None,
) -> EventStream:
    """The stream of `body`; `release` is awaited when it ends (see `EventStream`)."""
    headers = {**SSE_HEADERS, "X-Kaiwa-Response-Id": response_id}
    return EventStream(body, headers=headers, release=release)
