"""The text of a PDF, read by pypdf within an inflate budget (`kaiwa.knowledge.inflate`).

    title, pages = read_pdf(data, InflateLimits())   # raises TooLarge past the budget

Every stream is counted before pypdf can decode it: `_CountingReader` hooks
`PdfReader.get_object`, the one door through which pypdf reaches an object, whether the cross-
reference table lists it, a repair finds it or an object stream holds it. A Flate stream is
inflated in chunks that are dropped at once, so refusing a bomb costs a few hundred KiB. Text is
counted too as pypdf extracts it (through its `visitor_text`): a Form XObject drawn thousands of
times multiplies text without inflating anything. Both budgets are the document's.

Deliberate oddities:
- Image streams are neither counted nor kept: their bytes are dropped as they are read. Text
  extraction never decodes an image (a deck of screenshots would inflate far past the budget), and
  a stream that only claims to be an image, to be drawn as page content, then inflates to nothing.
- A stream pypdf can only decode whole (LZW, run-length, Brotli, Flate behind another filter) is
  counted by decoding it once, under pypdf's own output limits set to the budget left. Those limits
  (`pypdf.Configuration`) are the budget for the whole read as well: they alone bound the
  cross-reference streams pypdf decodes while it opens the file.
- pypdf swallows errors inside a Form XObject and reads on, so the budgets are checked again after
  every page.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pypdf import PdfReader, apply_configuration
from pypdf.errors import FileNotDecryptedError, LimitReachedError, PyPdfError
from pypdf.filters import ASCII85Decode, ASCIIHexDecode
from pypdf.generic import ArrayObject, EncodedStreamObject, IndirectObject, PdfObject

from kaiwa.knowledge.inflate import CHUNK, Budget, InflateLimits

__all__ = ["read_pdf"]

# Filters that only ever shrink their input: undone whole before the Flate under them.
_ARMOUR: dict[str, Callable[[bytes], bytes]] = {
    "/ASCIIHexDecode": ASCIIHexDecode.decode,
    "/AHx": ASCIIHexDecode.decode,
    "/ASCII85Decode": ASCII85Decode.decode,
    "/A85": ASCII85Decode.decode,
}
_FLATE = frozenset({"/FlateDecode", "/Fl"})
_EXPANDING = _FLATE | {"/LZWDecode", "/LZW", "/RunLengthDecode", "/RL", "/BrotliDecode"}
_OUTPUT_LIMITS = (
    "zlib_maximum_output_length",
    "lzw_maximum_output_length",
    "run_length_maximum_output_length",
    "brotli_maximum_output_length",
    "array_based_stream_maximum_output_length",
    "jbig2_maximum_output_length",
)
_TEXT = "its text runs to"


def read_pdf(data: bytes, limits: InflateLimits) -> tuple[str, list[str]]:
    """The title and the text of each page.

    Raises `TooLarge`, `FileNotDecryptedError` (a password is needed), or what pypdf raises for a
    damaged file.
    """
    streams = Budget(limits, size=len(data))
    text = Budget(limits, size=len(data))

    def count_text(piece: Any, *_: Any) -> None:
        text.spend(len(piece), what=_TEXT)

    pages: list[str] = []
    with _output_limits(streams.total):
        reader = _CountingReader(io.BytesIO(data), streams)
        if reader.is_encrypted and not reader.decrypt(""):
            raise FileNotDecryptedError("password")
        for page in reader.pages:
            pages.append(page.extract_text(visitor_text=count_text) or "")
            if streams.left < 0:
                raise streams.over()
            if text.left < 0:
                raise text.over(_TEXT)
        title = (reader.metadata.title if reader.metadata else None) or ""
    return str(title), pages


class _CountingReader(PdfReader):
    def __init__(self, stream: io.BytesIO, budget: Budget) -> None:
        self._inflate_budget = budget
        # Held, so that no other stream is ever given the id of one counted.
        self._counted: dict[int, EncodedStreamObject] = {}
        super().__init__(stream)

    def get_object(self, indirect_reference: int | IndirectObject) -> PdfObject | None:
        found = super().get_object(indirect_reference)
        if isinstance(found, EncodedStreamObject) and id(found) not in self._counted:
            # Counted again when resolved again after a refusal: it stays refused.
            _count(found, self._inflate_budget)
            self._counted[id(found)] = found
        return found


def _count(stream: EncodedStreamObject, budget: Budget) -> None:
    # pypdf keeps a stream's raw bytes in `_data`, with no public accessor.
    if stream.get("/Subtype") == "/Image":
        stream._data = b""
        return
    filters = stream.get("/Filter")
    if isinstance(filters, IndirectObject):
        filters = filters.get_object()
    names = [str(name) for name in filters] if isinstance(filters, ArrayObject) else [str(filters)]
    data = stream._data
    try:
        while names and names[0] in _ARMOUR:
            data = _ARMOUR[names.pop(0)](data)
    except (PyPdfError, ValueError):
        return  # pypdf fails on it the same way, and decodes nothing
    if len(names) == 1 and names[0] in _FLATE:
        _inflate(data, budget)
    elif _EXPANDING.intersection(names):
        _decode(stream, budget)


def _inflate(data: bytes, budget: Budget) -> None:
    # Zlib or gzip: pypdf's recovery accepts either. A stream that breaks yields, in pypdf too,
    # no more than what comes before the break.
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)
    pending = data
    try:
        while pending and not inflater.eof:
            budget.spend(len(inflater.decompress(pending, CHUNK)))
            pending = inflater.unconsumed_tail
    except zlib.error:
        return


def _decode(stream: EncodedStreamObject, budget: Budget) -> None:
    with _output_limits(budget.left + 1):
        try:
            decoded = stream.get_data()
        except LimitReachedError:
            raise budget.over() from None
        except (PyPdfError, ValueError, NotImplementedError):
            return  # pypdf fails on it the same way, and decodes nothing
    budget.spend(len(decoded))


@contextmanager
def _output_limits(size: int) -> Iterator[None]:
    with apply_configuration(None, **dict.fromkeys(_OUTPUT_LIMITS, max(1, size))):
        yield
