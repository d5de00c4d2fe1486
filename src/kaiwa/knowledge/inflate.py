"""How far a compressed document may inflate: the members of a Word file, the streams of a PDF.

    budget = Budget(InflateLimits(max_bytes=100 << 20, max_ratio=100), size=len(data))
    check_zip(zipfile.ZipFile(io.BytesIO(data)), budget)   # before python-docx reads a byte
    budget.spend(len(chunk))                                # raises `TooLarge` past the limit

A document may inflate to `max_bytes` in all, and to `max_ratio` times its own size, whichever is
less: a 256 KiB upload gets 25 MiB, a 20 MiB one 100 MiB. The checks inflate in chunks and drop
what they read, so refusing a bomb costs a few hundred KiB of memory, never what the bomb would
have become; the parsers that run after them only inflate what was counted.

Deliberate oddities:
- A zip member is read past the size it declares, and one that holds more is refused as damaged:
  `ZipFile.read` inflates a member whole before it cuts it to its declared size, so a member whose
  header lies would inflate without bound inside python-docx.
- Only stored and deflated members are accepted (Word writes nothing else): zipfile hands bzip2
  and LZMA input to their decompressors without an output limit.
"""

from __future__ import annotations

import copy
import sys
import zipfile
from dataclasses import dataclass

__all__ = ["CHUNK", "Budget", "InflateLimits", "TooLarge", "check_zip"]

#: Bytes inflated at a time while counting.
CHUNK = 256 * 1024

_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})


class TooLarge(Exception):
    """A document inflates past its budget; `message` names the limit and its setting."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class InflateLimits:
    """The settings `max_extracted_bytes` and `max_compression_ratio`."""

    max_bytes: int = 100 * 1024 * 1024
    """Bytes one document may inflate to in all, and characters of text it may yield."""
    max_ratio: float = 100.0
    """How many times its own size a document may inflate to."""


class Budget:
    """What one document may still inflate to; `spend` raises `TooLarge` once it is gone."""

    def __init__(self, limits: InflateLimits, *, size: int) -> None:
        by_ratio = int(limits.max_ratio * size)
        self.total = max(1, min(limits.max_bytes, by_ratio))
        self.left = self.total
        if by_ratio < limits.max_bytes:
            self._limit = f"{limits.max_ratio:g} times its size (max_compression_ratio)"
        else:
            self._limit = f"{limits.max_bytes} bytes (max_extracted_bytes)"

    def spend(self, amount: int, *, what: str = "unpacks to") -> None:
        self.left -= amount
        if self.left < 0:
            raise self.over(what)

    def over(self, what: str = "unpacks to") -> TooLarge:
        return TooLarge(f"{what} more than {self._limit}")


def check_zip(archive: zipfile.ZipFile, budget: Budget) -> None:
    """Refuse an archive that inflates past `budget`: first by the sizes its central directory
    declares, then by what each member really inflates to.

    Raises `TooLarge`, or `zipfile.BadZipFile` for a member that is encrypted, compressed in a
    way Word never uses, or larger than it declares.
    """
    members = archive.infolist()
    if sum(info.file_size for info in members) > budget.left:
        raise budget.over()
    for info in members:
        if info.compress_type not in _ZIP_METHODS:
            raise zipfile.BadZipFile(f"{info.filename}: unsupported compression")
        if info.flag_bits & 0x1:
            raise zipfile.BadZipFile(f"{info.filename}: encrypted")
        if _inflated_size(archive, info, budget) != info.file_size:
            raise zipfile.BadZipFile(f"{info.filename}: not the size it declares")


def _inflated_size(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: Budget) -> int:
    # Declared endless, so that zipfile never cuts a member at the size it claims (and checks
    # the CRC of what it cut): the budget stops the read instead.
    probe = copy.copy(info)
    probe.file_size = sys.maxsize
    size = 0
    with archive.open(probe) as member:
        while chunk := member.read(CHUNK):
            size += len(chunk)
            budget.spend(len(chunk))
    return size
