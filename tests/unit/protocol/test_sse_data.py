"""`DataDecoder`: the data of every event a model streams, read from bytes, split anywhere —
the same events, with the same data, as the WHATWG decoder (`SSEDecoder`) finds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kaiwa.protocol.sse import DataDecoder, SSEDecoder

_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12
)
_lines = st.one_of(
    _text.map(lambda t: f"data: {t}"),
    _text.map(lambda t: f"data:{t}"),
    _text.map(lambda t: f"data:  {t}"),
    st.just("data"),
    st.just("data "),
    st.just(""),
    st.just(""),
    _text.map(lambda t: f": {t}"),
    _text.map(lambda t: f"event: {t}"),
    st.just("id: 7"),
    st.just("retry: 10"),
    _text,
)
_endings = st.sampled_from(["\n", "\r\n", "\r"])


def data_of(chunks: list[bytes]) -> list[bytes]:
    decoder = DataDecoder()
    return [data for chunk in chunks for data in decoder.decode(chunk)]


def reference(stream: bytes) -> list[bytes]:
    return [event.data.encode() for event in SSEDecoder().decode(stream)]


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(st.tuples(_lines, _endings), max_size=14),
    bom=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_any_stream_split_anywhere_gives_the_whatwg_decoders_data(
    lines: list[tuple[str, str]], bom: bool, cuts: list[int]
) -> None:
    stream = ("\ufeff" if bom else "") + "".join(line + end for line, end in lines)
    raw = stream.encode()
    assert data_of(split(raw, cuts)) == reference(raw)


def test_an_openai_stream_split_at_every_byte() -> None:
    stream = (
        b'data: {"choices":[{"delta":{"content":"\xe5\x96\xb6\xe6\xa5\xad"}}]}\n\n'
        b": keep-alive\n\n"
        b'data: {"choices":[],"usage":{"prompt_tokens":3}}\r\n\r\n'
        b"data: [DONE]\n\n"
    )
    expected = [
        '{"choices":[{"delta":{"content":"営業"}}]}'.encode(),
        b'{"choices":[],"usage":{"prompt_tokens":3}}',
        b"[DONE]",
    ]
    for cut in range(len(stream) + 1):
        assert data_of([stream[:cut], stream[cut:]]) == expected, cut
    assert data_of([bytes([byte]) for byte in stream]) == expected


def test_a_byte_order_mark_is_dropped_once_even_split() -> None:
    assert data_of([b"\xef", b"\xbb", b"\xbfdata: a\n\n"]) == [b"a"]
    assert data_of([b"\xef\xbb\xbfdata: \xef\xbb\xbfa\n\n"]) == ["\ufeffa".encode()]


def test_an_event_without_its_blank_line_is_not_dispatched() -> None:
    assert data_of([b"data: 1\n\ndata: 2\n"]) == [b"1"]


def test_multi_line_data_is_joined_with_line_feeds() -> None:
    assert data_of([b"data: a\rdata\r\ndata:  b\n\n"]) == [b"a\n\n b"]
