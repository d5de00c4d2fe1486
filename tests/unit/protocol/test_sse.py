"""SSE framing: the encoder's exact bytes and the decoder's reading of split byte streams.

Decoder cases are tables of (chunks in, events out), read per the WHATWG "interpret an event
stream" steps: https://html.spec.whatwg.org/multipage/server-sent-events.html
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaiwa.protocol.events import (
    ChatTitleUpdated,
    OutputTextCompleted,
    OutputTextDelta,
    ResponseError,
    TokenUsage,
    parse_event,
)
from kaiwa.protocol.sse import (
    DONE,
    PING,
    DeltaFrames,
    ServerSentEvent,
    SSEDecoder,
    encode_frame,
)


def decode_all(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.decode(chunk))
    events.extend(decoder.flush())
    return events


def every_split(stream: bytes) -> list[list[bytes]]:
    """The stream whole, cut in two at every byte, and cut into single bytes."""
    splits = [[stream]]
    splits += [[stream[:i], stream[i:]] for i in range(1, len(stream))]
    splits.append([stream[i : i + 1] for i in range(len(stream))])
    return splits


def sse(data: str, *, event: str = "message", id: str | None = None) -> ServerSentEvent:
    return ServerSentEvent(event=event, data=data, id=id)


# -- multi-byte characters -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("営業時間は", id="japanese-3-byte"),
        pytest.param("😀🎌", id="emoji-4-byte"),
        pytest.param("こんにちは😀です", id="mixed"),
    ],
)
def test_multibyte_character_split_at_every_byte_decodes_whole(text: str) -> None:
    stream = f"event: response.output_text.delta\ndata: {text}\n\n".encode()
    expected = [sse(text, event="response.output_text.delta")]
    for chunks in every_split(stream):
        assert decode_all(chunks) == expected, chunks


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert decode_all([b"data: \xff\n\n"]) == [sse("\ufffd")]


# -- line endings ----------------------------------------------------------------------------

LINE_ENDINGS: list[tuple[list[bytes], list[ServerSentEvent]]] = [
    # Bare LF, bare CR and CRLF each end a line.
    ([b"data: a\ndata: b\n\n"], [sse("a\nb")]),
    ([b"data: a\rdata: b\r\r"], [sse("a\nb")]),
    ([b"data: a\r\ndata: b\r\n\r\n"], [sse("a\nb")]),
    ([b"data: a\rdata: b\ndata: c\r\n\n"], [sse("a\nb\nc")]),
    # A CRLF split across chunks is one line ending: were it two, `a` would be dispatched alone.
    ([b"data: a\r", b"\ndata: b\r\n\r\n"], [sse("a\nb")]),
    ([b"data: a\r", b"\n", b"data: b\r", b"\n\r", b"\n"], [sse("a\nb")]),
    # A CR at a chunk's end followed by another CR is two line endings: a blank line.
    ([b"data: a\r", b"\rdata: b\n\n"], [sse("a"), sse("b")]),
    # An empty chunk between the CR and the LF does not break the pair.
    ([b"data: a\r", b"", b"\ndata: b\n\n"], [sse("a\nb")]),
    # Nor does a character split right after the pair.
    ([b"data: a\r", b"\ndata: \xe5", b"\x96\xb6\n\n"], [sse("a\n営")]),
]


@pytest.mark.parametrize(("chunks", "expected"), LINE_ENDINGS)
def test_line_endings(chunks: list[bytes], expected: list[ServerSentEvent]) -> None:
    assert decode_all(chunks) == expected


@pytest.mark.parametrize("ending", [b"\n", b"\r", b"\r\n"], ids=["lf", "cr", "crlf"])
def test_line_ending_split_at_every_byte(ending: bytes) -> None:
    stream = b"id: 1" + ending + b"data: a" + ending + b"data: b" + ending + ending
    for chunks in every_split(stream):
        assert decode_all(chunks) == [sse("a\nb", id="1")], chunks


# -- fields ----------------------------------------------------------------------------------

FIELDS: list[tuple[list[bytes], list[ServerSentEvent]]] = [
    # Comments are ignored, alone or inside an event.
    ([PING], []),
    ([b": ping\n\ndata: x\n\n"], [sse("x")]),
    # kaiwa's keep-alive: a comment line straight before the next frame's fields, or [DONE].
    ([PING + b"id: 1\nevent: x\ndata: a\n\n"], [sse("a", event="x", id="1")]),
    (
        [PING + PING + b"id: 2\ndata: b\n\n" + PING + DONE],
        [sse("b", id="2"), sse("[DONE]", id="2")],
    ),
    ([PING + DONE], [sse("[DONE]")]),
    ([b"data: a\n: ping\ndata: b\n\n"], [sse("a\nb")]),
    # One leading space of a value is dropped, and only one.
    ([b"data:x\n\n"], [sse("x")]),
    ([b"data:  x\n\n"], [sse(" x")]),
    ([b"data: a: b\n\n"], [sse("a: b")]),
    # A field with no colon has the empty value: `data` alone is an empty data line.
    ([b"data\n\n"], [sse("")]),
    ([b"data\ndata\n\n"], [sse("\n")]),
    # Multiple data lines join with LF.
    ([b"data: {\ndata: 1\ndata: }\n\n"], [sse("{\n1\n}")]),
    # The event type names the event, and resets after each dispatch.
    ([b"event: x\ndata: 1\n\ndata: 2\n\n"], [sse("1", event="x"), sse("2")]),
    # An event without data is not dispatched, and its type does not leak into the next.
    ([b"event: x\n\n"], []),
    ([b"event: x\nid: 3\n\ndata: y\n\n"], [sse("y", id="3")]),
    # Unknown fields are ignored.
    ([b"foo: bar\ndata: x\n\n"], [sse("x")]),
    # `[DONE]` is ordinary data; what it means is the reader's business.
    ([DONE], [sse("[DONE]")]),
]


@pytest.mark.parametrize(("chunks", "expected"), FIELDS)
def test_fields(chunks: list[bytes], expected: list[ServerSentEvent]) -> None:
    assert decode_all(chunks) == expected


IDS: list[tuple[list[bytes], list[ServerSentEvent]]] = [
    # The last id is carried on every later event until another id replaces it.
    (
        [b"id: 7\ndata: a\n\ndata: b\n\nid: 8\ndata: c\n\n"],
        [sse("a", id="7"), sse("b", id="7"), sse("c", id="8")],
    ),
    # An empty id resets it to the empty string.
    ([b"id: 7\ndata: a\n\nid\ndata: b\n\n"], [sse("a", id="7"), sse("b", id="")]),
    # An id holding NULL is ignored.
    ([b"id: 7\ndata: a\n\nid: 8\x00\ndata: b\n\n"], [sse("a", id="7"), sse("b", id="7")]),
]


@pytest.mark.parametrize(("chunks", "expected"), IDS)
def test_ids(chunks: list[bytes], expected: list[ServerSentEvent]) -> None:
    assert decode_all(chunks) == expected


def test_last_event_id_tracks_the_latest_id_even_without_a_dispatch() -> None:
    decoder = SSEDecoder()
    assert decoder.last_event_id is None
    decoder.decode(b"id: 4\ndata: a\n\n")
    assert decoder.last_event_id == "4"
    decoder.decode(b"id: 5\n\n")
    assert decoder.last_event_id == "5"


@pytest.mark.parametrize(
    ("stream", "retry"),
    [
        (b"retry: 3000\ndata: x\n\n", 3000),
        (b"retry: 3s\ndata: x\n\n", None),
        (b"retry:\ndata: x\n\n", None),
        # Only ASCII digits count; other Unicode digits are ignored rather than crashing int().
        ("retry: ²\ndata: x\n\n".encode(), None),
        ("retry: ١٢\ndata: x\n\n".encode(), None),
    ],
)
def test_retry_takes_ascii_digits_only(stream: bytes, retry: int | None) -> None:
    [event] = decode_all([stream])
    assert event.retry == retry


# -- start and end of stream -----------------------------------------------------------------

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([BOM + b"data: x\n\n"], [sse("x")]),
        ([BOM[:1], BOM[1:] + b"data: x\n\n"], [sse("x")]),
        ([BOM[:2], BOM[2:], b"data: x\n\n"], [sse("x")]),
        # Only one BOM is stripped: a second makes the first field `\ufeffdata`, unknown.
        ([BOM + BOM + b"data: x\n\n"], []),
        # A BOM later in the stream is content.
        ([b"data: x\n\n", BOM + b"data: y\n\n"], [sse("x")]),
    ],
)
def test_leading_bom_is_stripped_once(chunks: list[bytes], expected: list[ServerSentEvent]) -> None:
    assert decode_all(chunks) == expected


@pytest.mark.parametrize(
    "tail",
    [b"data: x", b"data: x\n", b"data: x\r", b"data: \xe5\x96", b"id: 1\ndata: x\r\n"],
)
def test_flush_discards_an_incomplete_trailing_event(tail: bytes) -> None:
    decoder = SSEDecoder()
    assert decoder.decode(b"data: done\n\n" + tail) == [sse("done")]
    assert decoder.flush() == []


def test_large_chunk_of_many_frames_decodes_every_frame() -> None:
    stream = b"".join(encode_frame(i, "x", f'{{"n":{i}}}') for i in range(1, 5001))
    events = SSEDecoder().decode(stream)
    assert len(events) == 5000
    assert events[-1] == sse('{"n":5000}', event="x", id="5000")


# -- encoder ---------------------------------------------------------------------------------


def test_encode_frame_exact_bytes_for_a_japanese_delta() -> None:
    event = OutputTextDelta(response_id="resp_1", chat_id=12345, delta="営業時間は")
    frame = encode_frame(7, event.type, event.model_dump_json())
    assert frame == (
        b"id: 7\n"
        b"event: response.output_text.delta\n"
        b'data: {"type":"response.output_text.delta","response_id":"resp_1","chat_id":12345,'
        b'"delta":"\xe5\x96\xb6\xe6\xa5\xad\xe6\x99\x82\xe9\x96\x93\xe3\x81\xaf"}\n'
        b"\n"
    )


def test_encoded_data_is_one_line_when_the_text_has_line_breaks() -> None:
    text = "一行目\n二行目\r\n三行目\rend"
    event = OutputTextDelta(response_id="r", chat_id=1, delta=text)
    frame = encode_frame(1, event.type, event.model_dump_json())
    lines = frame.decode().split("\n")
    assert lines[:2] == ["id: 1", "event: response.output_text.delta"]
    assert lines[2].startswith("data: {")
    assert lines[3:] == ["", ""]
    assert "\r" not in frame.decode()
    [decoded] = decode_all([frame])
    assert parse_event(decoded.data) == event


@pytest.mark.parametrize("data_json", ['{"a":\n1}', '{"a":\r1}'])
def test_encode_frame_refuses_data_with_a_line_break(data_json: str) -> None:
    with pytest.raises(ValueError, match="single line"):
        encode_frame(1, "x", data_json)


def test_done_and_ping_frames() -> None:
    assert DONE == b"data: [DONE]\n\n"
    assert PING == b": ping\n"


@settings(max_examples=300)
@given(
    response_id=st.text(max_size=40),
    chat_id=st.integers(-(2**63), 2**63),
    event_id=st.integers(1, 2**40),
    text=st.text(),
)
def test_delta_frames_are_the_bytes_the_event_model_encodes(
    response_id: str, chat_id: int, event_id: int, text: str
) -> None:
    event = OutputTextDelta(response_id=response_id, chat_id=chat_id, delta=text)
    expected = encode_frame(event_id, event.type, event.model_dump_json())
    assert DeltaFrames(response_id, chat_id).encode(event_id, text) == expected


@pytest.mark.parametrize("text", ["", "\x00\x1f\x7f", '"\\/', "\u2028\u2029", "😀営業", "a\r\nb"])
def test_delta_frames_escape_like_the_event_model(text: str) -> None:
    event = OutputTextDelta(response_id="r", chat_id=1, delta=text)
    expected = encode_frame(3, event.type, event.model_dump_json())
    assert DeltaFrames("r", 1).encode(3, text) == expected


# -- encoder and decoder together ------------------------------------------------------------

_ids = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=8)
_events = st.one_of(
    st.builds(OutputTextDelta, response_id=_ids, chat_id=st.integers(0, 2**53), delta=st.text()),
    st.builds(ChatTitleUpdated, response_id=_ids, chat_id=st.integers(0, 9), name=st.text()),
    st.builds(
        ResponseError,
        response_id=_ids,
        chat_id=st.integers(0, 9),
        message=st.text(),
        code=st.integers(10001, 14103),
    ),
    st.builds(
        OutputTextCompleted,
        response_id=_ids,
        chat_id=st.integers(0, 9),
        final_text=st.text(),
        usage=st.builds(TokenUsage, total_tokens=st.integers(0, 10**6)),
    ),
)


@settings(max_examples=150, deadline=None)
@given(events=st.lists(_events, max_size=6), pings=st.lists(st.booleans()), data=st.data())
def test_any_split_of_encoded_events_decodes_to_the_same_events(
    events: list[OutputTextDelta | ChatTitleUpdated | ResponseError | OutputTextCompleted],
    pings: list[bool],
    data: st.DataObject,
) -> None:
    frames = [encode_frame(n, e.type, e.model_dump_json()) for n, e in enumerate(events, 1)]
    frames.append(DONE)
    for index, ping in enumerate(pings[: len(frames)]):
        if ping:
            frames[index] = PING + frames[index]
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=12), label="cuts"))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]

    decoded = decode_all(chunks)

    expected = [(str(n), e.type, e.model_dump_json()) for n, e in enumerate(events, 1)]
    done_id = str(len(events)) if events else None
    assert [(d.id, d.event, d.data) for d in decoded] == [*expected, (done_id, "message", "[DONE]")]
    assert [parse_event(d.data) for d in decoded[:-1]] == events
