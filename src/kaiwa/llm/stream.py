"""Reading a model server's streamed body: each event's data as parsed JSON, a read at a time.

The providers keep their SDK for the request, its auth, retries and status errors, and read the
body of the streamed response here: `DataDecoder` finds each event's data in the bytes and
pydantic-core parses it, with no typed object per event and none of the SDK's own SSE layers
(see `bench/model_stream.py`).

    body = Body(response)                # the response itself may go now
    try:
        async for events in json_events(body, keep=lambda event: ..., end=b"[DONE]"):
            for event in events: ...
    finally:
        await body.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import httpx2
from pydantic_core import from_json

from kaiwa.protocol.sse import DataDecoder

DRAIN_TIMEOUT = 1.0
"""How long the rest of a body after its end marker is read, so its connection can be reused."""


class BadStream(Exception):
    """The stream parsed but makes no sense; the message says how (never quoting the body)."""


class Body:
    """A streamed response's body, read and closed without the response.

    An answer's body stays open for as long as the answer; the `httpx2.Response` around it
    keeps its headers, its request (headers and JSON body, the whole conversation) and a
    chain of generators per read, none of which reading needs. Without a `Content-Encoding`
    the transport's byte stream is all that is kept; a compressed body is still read through
    the response, which decodes it.
    """

    __slots__ = ("_response", "_stream")

    def __init__(self, response: httpx2.Response) -> None:
        stream = response.stream
        encoded = response.headers.get("content-encoding", "identity") != "identity"
        if encoded or not isinstance(stream, httpx2.AsyncByteStream):
            self._response: httpx2.Response | None = response
            self._stream: httpx2.AsyncByteStream | None = None
        else:
            self._response, self._stream = None, stream

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._stream is not None:
            return self._stream.__aiter__()
        assert self._response is not None
        return self._response.aiter_bytes()

    async def aclose(self) -> None:
        """Also on cancellation: closing the body drops the upstream connection."""
        if self._stream is not None:
            await self._stream.aclose()
        elif self._response is not None:
            await self._response.aclose()


class ReadWatch:
    """One answer's waits for its body, timed by a `Deadlines` that every answer shares
    (`Deadlines(chunk_timeout, ReadWatch.expire)`): one event-loop timer for all of them.

        deadlines.arm(watch)
        try:
            events = await anext(reads, None)
        finally:
            deadlines.disarm(watch)
        ...
        except asyncio.CancelledError:
            if not watch.timed_out():
                raise                     # someone else's cancellation

    What `asyncio.timeout` does, without its timer: armed only around the await, so the
    cancellation lands there, never in the consumer's time with an event.
    """

    __slots__ = ("_cancelling", "_expired", "_task")

    def __init__(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False

    def expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def timed_out(self) -> bool:
        """After a `CancelledError`: whether it is this watch's own (then undone), as
        `asyncio.timeout` turns its own into a `TimeoutError`."""
        return self._expired and self._task.uncancel() <= self._cancelling


async def json_events(
    body: Body,
    *,
    keep: Callable[[object], bool] = lambda event: True,
    end: bytes | None = None,
) -> AsyncGenerator[list[object], None]:
    """The events of each read of the body, parsed, to its end or to `end`.

    `keep(event)` leaves an event out when false (a keep-alive) and may raise `BadStream` (an
    error the server sent). Events with empty data are skipped. On a fault, the events parsed
    before it in the same read are yielded first — they are the answer's partial text — then
    `BadStream` is raised. After a data of `end` (e.g. `[DONE]`) the rest of the body is read,
    briefly, and dropped. A read with no kept event yields nothing.
    """
    decoder = DataDecoder()
    reads = aiter(body)
    async for raw in reads:
        events: list[object] = []
        for data in decoder.decode(raw):
            if end is not None and data.startswith(end):
                if events:
                    yield events
                with contextlib.suppress(httpx2.HTTPError, TimeoutError):
                    async with asyncio.timeout(DRAIN_TIMEOUT):
                        async for _ in reads:
                            pass
                return
            if not data:
                continue
            try:
                event = parse(data)
                if not keep(event):
                    continue
            except BadStream:
                if events:
                    yield events
                raise
            events.append(event)
        if events:
            yield events


def parse(data: bytes) -> object:
    """One event's data as `json.loads` would make it; `BadStream` when it is not JSON."""
    try:
        return from_json(data)
    except ValueError:
        # What pydantic-core refuses that `json.loads` takes (as the SDKs did): e.g. an
        # escaped half of a surrogate pair. Anything else is not JSON.
        try:
            return json.loads(data)
        except ValueError:
            raise BadStream("malformed event from the model server") from None
