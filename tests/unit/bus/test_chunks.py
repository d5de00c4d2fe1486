"""`chunks`: a finished log's frames, packed `CHUNK` to a zlib chunk, read back by cursor."""

from __future__ import annotations

import pytest

from kaiwa.bus.chunks import CHUNK, pack, unpack


def frames(n: int) -> list[bytes]:
    # Lengths vary, one is empty, and the bytes are not UTF-8: the codec never parses a frame.
    return [b"" if i == 7 else bytes([i % 256]) * (i % 300) for i in range(1, n + 1)]


@pytest.mark.parametrize("n", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 17])
def test_every_frame_comes_back_from_its_chunk(n: int) -> None:
    content = frames(n)
    chunks = pack(content)
    assert len(chunks) == -(-n // CHUNK)
    back = []
    for index, chunk in enumerate(chunks):
        count = min(CHUNK, n - index * CHUNK)
        back += unpack(chunk, count=count, start=0, limit=CHUNK)
    assert back == content


@pytest.mark.parametrize(("start", "limit"), [(0, 1), (3, 4), (9, 100), (10, 5)])
def test_unpack_slices_from_a_cursor(start: int, limit: int) -> None:
    content = frames(10)
    [chunk] = pack(content)
    assert unpack(chunk, count=10, start=start, limit=limit) == content[start : start + limit]


def test_deltas_of_one_response_shrink_many_times() -> None:
    head = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    content = [
        b'id: %d\n%s"response_id":"0b8e4a4e-3c1a","chat_id":1,"delta":"%s"}\n\n'
        % (i, head, "営業時間"[i % 4 :].encode())
        for i in range(1, 301)
    ]
    [chunk] = pack(content)
    assert len(chunk) * 10 < sum(map(len, content))
