"""Search terms for Japanese and English text, and a small in-memory BM25 ranking.

Japanese has no spaces between words, so a run of kanji and katakana becomes every overlapping
pair of characters (a lone character stands alone): `営業時間` in a question and `当店の営業時間`
in a passage share `営業`, `業時` and `時間`, wherever the word starts. Hiragana is mostly grammar
and is left out. Other scripts are split into words of three or more letters, lower-cased, minus a
few English words too common to tell passages apart.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

_JAPANESE = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# A word of another script stops where Japanese starts, so `kaiwaの設定` is `kaiwa` and `設定`.
_TERM_RUNS = re.compile(
    "(?P<ja>[\u30a0-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)"
    f"|(?P<word>[^\\W{_JAPANESE}]{{2,}})"
)
_COMMON = """about and are can could did does for from has have how its not our that the their there
these they this those was were what when where which who why will with would you your an as at be
by do if in is it of on or so to we"""
STOPWORDS = frozenset(_COMMON.split())


def terms(text: str) -> list[str]:
    """The search terms of `text`, in order, repeats kept (BM25 counts them)."""
    out: list[str] = []
    # NFKC folds full-width letters and digits (ＡＢＣ１２３) and half-width katakana.
    for match in _TERM_RUNS.finditer(unicodedata.normalize("NFKC", text).lower()):
        run = match.group()
        if match.lastgroup == "word":
            if run not in STOPWORDS:
                out.append(run)
        elif len(run) == 1:
            out.append(run)
        else:
            out.extend(run[i : i + 2] for i in range(len(run) - 1))
    return out


def rank(
    query: str, documents: Sequence[str], *, k1: float = 1.2, b: float = 0.75
) -> list[tuple[int, float]]:
    """BM25 over `documents` (a handful to a few thousand): `(index, score)`, best first.

    Documents sharing no term with the query are left out.
    """
    query_terms = set(terms(query))
    if not query_terms or not documents:
        return []
    counted = [Counter(terms(document)) for document in documents]
    lengths = [sum(counts.values()) for counts in counted]
    average = (sum(lengths) / len(lengths)) or 1.0
    n = len(documents)
    idf = {}
    for term in query_terms:
        df = sum(1 for counts in counted if term in counts)
        idf[term] = math.log(1 + (n - df + 0.5) / (df + 0.5))
    scored = []
    for index, counts in enumerate(counted):
        score = 0.0
        for term in query_terms:
            tf = counts.get(term, 0)
            if tf:
                norm = k1 * (1 - b + b * lengths[index] / average)
                score += idf[term] * tf * (k1 + 1) / (tf + norm)
        if score > 0:
            scored.append((index, score))
    scored.sort(key=lambda item: (-item[1], item[0]))
    return scored


#: Longer terms (a long identifier, a URL path) are cut to this many characters when indexed.
MAX_TERM_CHARS = 64

_JAPANESE_RUN = re.compile("[\u30a0-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{2,}")
_KANJI = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def index_terms(text: str) -> list[str]:
    """The terms knowledge-base search indexes: `terms(text)` plus every kanji on its own.

    A kanji alone carries meaning (`開` in `何時に開きますか` and in `開店`), and a question often
    has a word the documents only use inside longer ones. Measured on the test corpus, these
    unigrams raise lexical top-3 hits from 22 to 25 of 34 (see docs/knowledge.md).
    """
    out = terms(text)
    normalised = unicodedata.normalize("NFKC", text)
    for run in _JAPANESE_RUN.finditer(normalised):
        out.extend(char for char in run.group() if _KANJI.match(char))
    return out


def counted_terms(text: str) -> Counter[str]:
    """Each term of `index_terms(text)` (cut to `MAX_TERM_CHARS`) and how often it occurs."""
    return Counter(term[:MAX_TERM_CHARS] for term in index_terms(text))
