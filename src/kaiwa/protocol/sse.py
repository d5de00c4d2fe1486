"""Server-Sent Events framing: a frame encoder and a push-style incremental decoder.

The decoder follows the WHATWG "interpret an event stream" steps
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation) and
does no I/O: feed it bytes as they arrive with `decode(chunk)`, get complete events back, call
`flush()` at end of stream. Multi-byte UTF-8 characters and CRLF pairs may be split anywhere.

Deliberate oddity: the keep-alive `PING` is a comment line alone (`: ping` and its line feed),
with no blank line after it. A blank line ends an event, and some POST-capable SSE clients
(fetch-event-source among them) hand every blank line to the application as a message, even one
with no `data:`; the application then fails to parse it and the library retries the POST, asking
again. So on kaiwa's wire a blank line only ever ends a frame that has a `data:` line, and a ping
may sit directly before the `id:` line of the next frame or before `data: [DONE]`.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from pydantic_core import to_json

from kaiwa.protocol.events import OutputTextDelta

DONE = b"data: [DONE]\n\n"
PING = b": ping\n"
"""A keep-alive: a comment line that ends no event (see the module docstring)."""

_LINE_END = re.compile(r"\r\n|\r|\n")


def encode_frame(event_id: int, event_type: str, data_json: str) -> bytes:
    """One frame: `id:`, `event:`, one `data:` line of compact JSON, a blank line.

    `data_json` must be a single line (JSON encoders escape newlines in strings); a line break in
    it would end the frame early, so it is refused.
    """
    if "\n" in data_json or "\r" in data_json:
        raise ValueError("data_json must be a single line")
    return f"id: {event_id}\nevent: {event_type}\ndata: {data_json}\n\n".encode()


class DeltaFrames:
    """`response.output_text.delta` frames of one response, from a template.

    >>> DeltaFrames("r", 1).encode(7, "営業").decode()[-27:]
    '"chat_id":1,"delta":"営業"}\\n\\n'

    Byte for byte what `encode_frame(n, event.type, event.model_dump_json())` gives for the
    same `OutputTextDelta`, at a fraction of the cost: the response's part of the JSON is
    serialised once, and each delta's text by pydantic's own JSON string encoder (which escapes
    every control character, so a frame can never break across lines).
    """

    __slots__ = ("_head",)

    def __init__(self, response_id: str, chat_id: int) -> None:
        empty = OutputTextDelta(response_id=response_id, chat_id=chat_id, delta="")
        data = empty.model_dump_json()
        if not data.endswith('"delta":""}'):  # pragma: no cover - the model's fields changed
            raise RuntimeError(f"unexpected delta JSON: {data}")
        self._head = f"event: {empty.type}\ndata: {data[:-3]}".encode()

    def encode(self, event_id: int, text: str) -> bytes:
        return b"id: %d\n%s%s}\n\n" % (event_id, self._head, to_json(text))


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    """The last event id seen on the stream when this event was dispatched."""
    retry: int | None = None


class SSEDecoder:
    """Turns a byte stream into `ServerSentEvent`s.

    >>> d = SSEDecoder()
    >>> d.decode(b"event: x\\ndata: \\xe5\\x96")
    []
    >>> d.decode(b"\\xb6\\n\\n")
    [ServerSentEvent(event='x', data='営', id=None, retry=None)]
    """

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial: list[str] = []  # the current line so far, in pieces
        self._pending_cr = False
        self._first_chunk = True
        self._event = ""
        self._data: list[str] = []
        self._last_event_id: str | None = None
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str | None:
        return self._last_event_id

    def decode(self, chunk: bytes) -> list[ServerSentEvent]:
        text = self._text.decode(chunk)
        if self._first_chunk and text:
            self._first_chunk = False
            if text.startswith("\ufeff"):
                text = text[1:]
        return self._feed(text)

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: a trailing event without its blank line is discarded, per the spec."""
        self._feed(self._text.decode(b"", final=True))
        self._partial, self._pending_cr = [], False
        self._event, self._data = "", []
        return []

    def _feed(self, text: str) -> list[ServerSentEvent]:
        if self._pending_cr and text:
            # A CR ended the previous chunk; a LF starting this one belongs to it.
            self._pending_cr = False
            if text[0] == "\n":
                text = text[1:]
        if not text:
            return []
        # Only the new text is scanned, so a long line arriving in many chunks stays linear.
        lines = _LINE_END.split(text)
        if len(lines) == 1:
            self._partial.append(text)
            return []
        lines[0] = "".join(self._partial) + lines[0]
        self._partial = [lines.pop()]
        self._pending_cr = text.endswith("\r")
        events: list[ServerSentEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._last_event_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event, data = self._event, self._data
        self._event, self._data = "", []
        if not data:
            return None
        return ServerSentEvent(
            event=event or "message",
            data="\n".join(data),
            id=self._last_event_id,
            retry=self._retry,
        )


class DataDecoder:
    """Only the `data` of each event, as bytes: what a client of a model's stream needs.

    >>> d = DataDecoder()
    >>> d.decode(b'data: {"a": 1}\\n\\ndata: x\\r\\ndata')
    [b'{"a": 1}']
    >>> d.decode(b"\\n: comment\\n\\n")
    [b'x\\n']

    The same events, with the same data, as `SSEDecoder` (a property test holds the two to
    it), read straight from bytes: the data goes to a JSON parser as bytes, so nothing is
    decoded twice. Events without a `data` line are not dispatched; other fields are skipped.
    A model stream's usual chunk — `data: {...}` and a blank line, LF-terminated — costs one
    split and two comparisons per line.
    """

    __slots__ = ("_data", "_partial", "_pending_cr", "_start")

    def __init__(self) -> None:
        self._partial: list[bytes] = []  # the current line so far, in pieces
        self._pending_cr = False
        self._start = True  # a byte order mark may come first
        self._data: list[bytes] = []

    def decode(self, chunk: bytes) -> list[bytes]:
        if self._start:
            head = b"".join(self._partial) + chunk
            if len(head) < 3 and _BOM.startswith(head):
                self._partial = [head] if head else []
                return []  # too short to tell
            self._start = False
            self._partial = []
            chunk = head[3:] if head.startswith(_BOM) else head
        if self._pending_cr or b"\r" in chunk:
            if self._pending_cr and chunk[:1] == b"\n":
                chunk = chunk[1:]  # the LF of a CRLF whose CR ended the previous chunk
            self._pending_cr = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in chunk:
            if chunk:
                self._partial.append(chunk)
            return []
        lines = chunk.split(b"\n")
        if self._partial:
            self._partial.append(lines[0])
            lines[0] = b"".join(self._partial)
        last = lines.pop()
        self._partial = [last] if last else []
        events: list[bytes] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line == b"data":
                data.append(b"")
        return events


_BOM = b"\xef\xbb\xbf"
