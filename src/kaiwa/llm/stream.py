"""Reading a model server's streamed body: each event's data as parsed JSON, a read at a time.

The providers keep their SDK for the request, its auth, retries and status errors, and read the
body of the streamed response here: `DataDecoder` finds each event's data in the bytes and
pydantic-core parses it, with no typed object per event and none of the SDK's own SSE layers
(see `bench/model_stream.py`).

    async for events in json_events(response, keep=lambda event: ..., end=b"[DONE]"):
        for event in events: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Callable

import httpx2
from pydantic_core import from_json

from kaiwa.protocol.sse import DataDecoder

DRAIN_TIMEOUT = 1.0
"""How long the rest of a body after its end marker is read, so its connection can be reused."""


class BadStream(Exception):
    """The stream parsed but makes no sense; the message says how (never quoting the body)."""


async def json_events(
    response: httpx2.Response,
    *,
    keep: Callable[[object], bool] = lambda event: True,
    end: bytes | None = None,
) -> AsyncGenerator[list[object], None]:
    """The events of each read of `response`'s body, parsed, to the body's end or to `end`.

    `keep(event)` leaves an event out when false (a keep-alive) and may raise `BadStream` (an
    error the server sent). Events with empty data are skipped. On a fault, the events parsed
    before it in the same read are yielded first — they are the answer's partial text — then
    `BadStream` is raised. After a data of `end` (e.g. `[DONE]`) the rest of the body is read,
    briefly, and dropped. A read with no kept event yields nothing.
    """
    decoder = DataDecoder()
    body = response.aiter_bytes()
    async for raw in body:
        events: list[object] = []
        for data in decoder.decode(raw):
            if end is not None and data.startswith(end):
                if events:
                    yield events
                with contextlib.suppress(httpx2.HTTPError, TimeoutError):
                    async with asyncio.timeout(DRAIN_TIMEOUT):
                        async for _ in body:
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
