"""The part of a chunk to show for a hit: the sentences that share most terms with the query.

snippet("…長い本文。解約は前月末までにご連絡ください。…", "解約の締め切り")
# '…解約は前月末までにご連絡ください。…'
"""

from __future__ import annotations

from kaiwa.knowledge.chunk import sentences
from kaiwa.knowledge.terms import terms

__all__ = ["SNIPPET_CHARS", "snippet"]

SNIPPET_CHARS = 200
_ELLIPSIS = "…"


def snippet(text: str, query: str, *, width: int = SNIPPET_CHARS) -> str:
    """At most `width` characters of `text` around its best match for `query`, with `…` marking
    cuts; the start of `text` when nothing matches."""
    text = " ".join(text.split()) if "\n" in text else text
    if len(text) <= width:
        return text
    wanted = set(terms(query))
    spans = sentences(text)
    best, best_score = 0, 0
    for index, (start, end) in enumerate(spans):
        score = len(wanted.intersection(terms(text[start:end])))
        if score > best_score:
            best, best_score = index, score
    if not spans or best_score == 0:
        return _clip(text, 0, width)
    start, end = spans[best]
    if end - start >= width:
        # A long sentence: centre the window on the first query term found in it.
        lowered = text[start:end].lower()
        found = [lowered.find(term) for term in wanted]
        first = min((position for position in found if position >= 0), default=0)
        begin = max(start, min(start + first - width // 3, end - width))
        return _clip(text, begin, begin + width)
    # Grow around the sentence, following sentences first, while it fits.
    before, after = best, best
    while True:
        if after + 1 < len(spans) and spans[after + 1][1] - start <= width:
            after += 1
            end = spans[after][1]
        elif before > 0 and end - spans[before - 1][0] <= width:
            before -= 1
            start = spans[before][0]
        else:
            break
    return _clip(text, start, end)


def _clip(text: str, start: int, end: int) -> str:
    piece = text[start:end].strip()
    room = end - start - (start > 0) - (end < len(text))
    if start > 0 or end < len(text):
        piece = piece[: max(room, 1)].strip()
    return (_ELLIPSIS if start > 0 else "") + piece + (_ELLIPSIS if end < len(text) else "")
