"""The frames of a finished log, compacted into zlib chunks of `CHUNK` frames.

    chunks = pack(frames)                      # [chunk 0, chunk 1, …], each bytes
    unpack(chunks[1], count=n, start=5, limit=3)   # frames 1006, 1007, 1008 (seq)

Chunk `i` holds the frames with sequence numbers `i * CHUNK + 1` to `(i + 1) * CHUNK`: a
little-endian uint32 length per frame, then the frames, compressed as one. A reader knows how
many frames a chunk holds from the log's last sequence number, so a chunk carries no header.
Consecutive frames of one response repeat their event type, response id and chat id, so a
chunk of deltas shrinks some twentyfold.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

__all__ = ["CHUNK", "pack", "unpack"]

CHUNK = 1000
"""Frames per chunk: a reader decompresses one chunk (~200 KB of deltas) per read."""


def pack(frames: Sequence[bytes]) -> list[bytes]:
    chunks = []
    for start in range(0, len(frames), CHUNK):
        part = frames[start : start + CHUNK]
        head = struct.pack(f"<{len(part)}I", *map(len, part))
        chunks.append(zlib.compress(head + b"".join(part)))
    return chunks


def unpack(chunk: bytes, *, count: int, start: int, limit: int) -> list[bytes]:
    """Frames `start` to `start + limit` (0-based, end excluded) of a chunk of `count` frames."""
    data = zlib.decompress(chunk)
    lengths = struct.unpack_from(f"<{count}I", data)
    offset = 4 * count + sum(lengths[:start])
    frames = []
    for length in lengths[start : start + limit]:
        frames.append(data[offset : offset + length])
        offset += length
    return frames
