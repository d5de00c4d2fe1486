"""An SSE client for the scale tests: read kaiwa's frames, stop after k of them, resume anywhere.

    async with SseClient(cluster.api_key) as client:
        read = await client.send(lb_url, chat_id, "hello", agent_id, stop_after=3)
        transcript = Transcript.begin(read)
        read = await client.events(replica_url, chat_id, transcript.response_id,
                                   last_event_id=transcript.last_id)
        transcript.add(read)
        transcript.check_exactly_once()

`FrameDecoder` is push-style and strict about kaiwa's framing (`id`, `event`, `data` lines, the
`: ping` comment, `data: [DONE]`); it does no I/O. A `Read` is what one connection delivered and
how it ended; a `Transcript` is what one client saw of one response over all its connections.
`converse` plays a whole client: send, drop the connection after some frames, resume with
`Last-Event-ID`, until `[DONE]`.

Every read is bounded: httpx's read timeout per chunk, and a deadline for the whole read.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx

T = TypeVar("T")
ENDINGS = ("response.output_text.completed", "response.error")
Ending = Literal["done", "stopped", "cut", "timeout", "eof", "status"]
"""How a read ended: `[DONE]` then the server closed; the client stopped after k frames; the
connection broke; no byte for the read timeout; a clean close without `[DONE]`; not a 200."""


@dataclass(frozen=True)
class Frame:
    id: int
    type: str
    data: dict[str, Any]


class FrameDecoder:
    """Bytes in, whole frames out; holds a partial frame across chunks."""

    def __init__(self) -> None:
        self._buffer = b""
        self.done = False
        self.pings = 0

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buffer += chunk
        *blocks, self._buffer = self._buffer.split(b"\n\n")
        frames = []
        for block in blocks:
            assert not self.done, f"a frame after [DONE]: {block!r}"
            while block.startswith(b": ping\n"):  # keep-alive lines sit before a frame
                self.pings += 1
                block = block.removeprefix(b": ping\n")
            if block == b"data: [DONE]":
                self.done = True
            else:
                frames.append(_frame(block))
        return frames


def _frame(block: bytes) -> Frame:
    lines = block.decode("utf-8").split("\n")
    assert len(lines) == 3, block
    id_line, event_line, data_line = lines
    assert id_line.startswith("id: "), block
    assert id_line[4:].isdigit(), block
    assert event_line.startswith("event: "), block
    assert data_line.startswith("data: "), block
    data = json.loads(data_line[6:])
    assert data["type"] == event_line[7:], block
    return Frame(int(id_line[4:]), data["type"], data)


@dataclass
class Read:
    """What one connection delivered."""

    status: int
    response_id: str | None
    frames: list[Frame]
    ending: Ending
    body: bytes = b""
    """The body of a reply that was not 200 (an envelope)."""

    @property
    def done(self) -> bool:
        return self.ending == "done"

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.body)
        return body


@dataclass
class Transcript:
    """Every frame one client saw of one response, over all its connections, in order."""

    response_id: str
    frames: list[Frame] = field(default_factory=list)
    done: bool = False
    reads: list[Read] = field(default_factory=list)

    @classmethod
    def begin(cls, read: Read) -> Transcript:
        assert read.status == 200, (read.status, read.body[:500])
        assert read.response_id, "no X-Kaiwa-Response-Id header"
        transcript = cls(read.response_id)
        transcript.add(read)
        return transcript

    def add(self, read: Read) -> None:
        assert read.status == 200, (read.status, read.body[:500])
        self.reads.append(read)
        self.frames.extend(read.frames)
        self.done = self.done or read.done

    @property
    def last_id(self) -> int:
        return self.frames[-1].id if self.frames else 0

    @property
    def ids(self) -> list[int]:
        return [frame.id for frame in self.frames]

    @property
    def types(self) -> list[str]:
        return [frame.type for frame in self.frames]

    @property
    def text(self) -> str:
        return "".join(
            frame.data["delta"]
            for frame in self.frames
            if frame.type == "response.output_text.delta"
        )

    @property
    def ending(self) -> Frame | None:
        """The frame that ended the response, if the client saw it."""
        if self.frames and self.frames[-1].type in ENDINGS:
            return self.frames[-1]
        return None

    def describe(self) -> str:
        reads = [(read.ending, [frame.id for frame in read.frames]) for read in self.reads]
        return f"response {self.response_id}: reads {reads}, types {self.types}"

    def check_exactly_once(self) -> None:
        """Ids 1..n with no gap and no duplicate, `response.created` first, one ending, last,
        every frame of this response, and `[DONE]` seen."""
        assert self.ids == list(range(1, len(self.frames) + 1)), self.describe()
        assert self.frames[0].type == "response.created", self.describe()
        assert [f.type in ENDINGS for f in self.frames].count(True) == 1, self.describe()
        assert self.ending is not None, self.describe()
        assert {f.data["response_id"] for f in self.frames} == {self.response_id}, self.describe()
        assert self.done, self.describe()

    def check_completed(self, text: str) -> None:
        """Exactly once, and ended by `output_text.completed` with `text` as deltas and final."""
        self.check_exactly_once()
        assert self.ending is not None
        assert self.ending.type == "response.output_text.completed", self.describe()
        assert self.ending.data["status"] == "completed", self.ending.data
        assert self.text == text, self.describe()
        assert self.ending.data["final_text"] == text, self.ending.data


class SseClient:
    """One pool of connections for many concurrent streams, with the cluster's key."""

    def __init__(self, api_key: str, *, read_timeout: float = 10.0, deadline: float = 60.0) -> None:
        self.api_key = api_key
        self.deadline = deadline
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(5.0, read=read_timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
            trust_env=False,
        )

    async def __aenter__(self) -> SseClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
        self,
        base_url: str,
        chat_id: int,
        message: str,
        agent_id: str,
        *,
        stop_after: int | None = None,
        deadline: float | None = None,
        on_frame: Callable[[Frame], None] | None = None,
        **body: Any,
    ) -> Read:
        """POST a message with `stream: true`; read to `[DONE]`, or only `stop_after` frames.
        `on_frame` sees each frame as it arrives (to act while the stream is open)."""
        request = self._http.build_request(
            "POST",
            f"{base_url}/api/v1/chats/{chat_id}/messages",
            json={"message": message, "agent_id": agent_id, "stream": True, **body},
            headers={"x-api-key": self.api_key, "accept": "text/event-stream"},
        )
        return await self._read(request, stop_after, deadline, on_frame)

    async def events(
        self,
        base_url: str,
        chat_id: int,
        response_id: str,
        *,
        last_event_id: int | None = None,
        stop_after: int | None = None,
        deadline: float | None = None,
        on_frame: Callable[[Frame], None] | None = None,
    ) -> Read:
        """GET the response's events after `last_event_id` (sent as `Last-Event-ID`)."""
        headers = {"x-api-key": self.api_key, "accept": "text/event-stream"}
        if last_event_id is not None:
            headers["last-event-id"] = str(last_event_id)
        request = self._http.build_request(
            "GET",
            f"{base_url}/api/v1/chats/{chat_id}/responses/{response_id}/events",
            headers=headers,
        )
        return await self._read(request, stop_after, deadline, on_frame)

    async def post(self, base_url: str, path: str, body: Any = None) -> httpx.Response:
        """A plain JSON POST with the key (cancel, non-streamed sends)."""
        return await self._http.post(
            f"{base_url}{path}", json=body, headers={"x-api-key": self.api_key}
        )

    async def _read(
        self,
        request: httpx.Request,
        stop_after: int | None,
        deadline: float | None,
        on_frame: Callable[[Frame], None] | None,
    ) -> Read:
        decoder = FrameDecoder()
        frames: list[Frame] = []
        response_id: str | None = None
        seconds = self.deadline if deadline is None else deadline
        try:
            async with asyncio.timeout(seconds):
                response = await self._http.send(request, stream=True)
                try:
                    response_id = response.headers.get("x-kaiwa-response-id")
                    if response.status_code != 200:
                        body = await response.aread()
                        return Read(response.status_code, response_id, [], "status", body)
                    if stop_after == 0:
                        return Read(200, response_id, [], "stopped")
                    async for chunk in response.aiter_raw():
                        for frame in decoder.feed(chunk):
                            frames.append(frame)
                            if on_frame is not None:
                                on_frame(frame)
                            if stop_after is not None and len(frames) >= stop_after:
                                return Read(200, response_id, frames, "stopped")
                finally:
                    await response.aclose()
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return Read(200, response_id, frames, "cut")
        except httpx.ReadTimeout:
            return Read(200, response_id, frames, "timeout")
        except TimeoutError:
            raise AssertionError(
                f"{request.method} {request.url} still open after {seconds:g} s; "
                f"frames {[frame.id for frame in frames]}"
            ) from None
        return Read(200, response_id, frames, "done" if decoder.done else "eof")


# -- a whole client -------------------------------------------------------------------------

RETRY_DELAY = 0.2
MAX_READS = 40


async def converse(
    client: SseClient,
    base_url: str,
    chat_id: int,
    agent_id: str,
    message: str,
    *,
    cuts: Sequence[int] = (),
    deadline: float = 60.0,
) -> Transcript:
    """Send a message through `base_url` and read its answer to `[DONE]`, as a careful client
    does: drop the connection after `cuts[0]` frames, then after `cuts[1]` more, ..., and
    whenever it is dropped, resume with `Last-Event-ID` through `base_url`.

    A send refused with 503 (a draining replica, no replica available) is sent again: nothing
    was stored. A connection that could not be made is retried too; every other failure fails.
    """
    ends_at = time.monotonic() + deadline
    pending = list(cuts)

    def remaining() -> float:
        left = ends_at - time.monotonic()
        assert left > 0, f"chat {chat_id}: no answer within {deadline:g} s"
        return left

    cut = pending.pop(0) if pending else None
    while True:
        try:
            first = await client.send(
                base_url, chat_id, message, agent_id, stop_after=cut, deadline=remaining()
            )
        except httpx.ConnectError:
            await asyncio.sleep(RETRY_DELAY)
            continue
        if first.status == 503:
            await asyncio.sleep(RETRY_DELAY)
            continue
        break
    transcript = Transcript.begin(first)
    return await follow(client, base_url, chat_id, transcript, cuts=pending, deadline=remaining())


async def follow(
    client: SseClient,
    base_url: str,
    chat_id: int,
    transcript: Transcript,
    *,
    cuts: Sequence[int] = (),
    deadline: float = 60.0,
) -> Transcript:
    """Resume through `base_url` until `[DONE]`, dropping the connection after `cuts[i]` frames
    on the i-th resume; 503s and failed connections are retried (bounded)."""
    ends_at = time.monotonic() + deadline
    pending = list(cuts)
    while not transcript.done:
        assert len(transcript.reads) < MAX_READS, transcript.describe()
        left = ends_at - time.monotonic()
        assert left > 0, f"chat {chat_id}: not done within {deadline:g} s: {transcript.describe()}"
        try:
            read = await client.events(
                base_url,
                chat_id,
                transcript.response_id,
                last_event_id=transcript.last_id,
                stop_after=pending[0] if pending else None,
                deadline=left,
            )
        except httpx.ConnectError:
            await asyncio.sleep(RETRY_DELAY)
            continue
        if read.status == 503:
            await asyncio.sleep(RETRY_DELAY)
            continue
        if pending:
            pending.pop(0)
        transcript.add(read)
    return transcript


async def all_of(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Await them all concurrently; once every one has ended, fail with a summary of the
    failures (the first few in full), or return the results in order."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    failures = [(n, r) for n, r in enumerate(results) if isinstance(r, BaseException)]
    if failures:
        shown = "\n".join(f"#{n}: {type(e).__name__}: {str(e)[:1500]}" for n, e in failures[:5])
        raise AssertionError(f"{len(failures)} of {len(results)} failed:\n{shown}")
    return [r for r in results if not isinstance(r, BaseException)]
