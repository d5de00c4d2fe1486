"""Retrieval quality and speed of knowledge-base search: lexical, dense and hybrid.

Indexes the test corpus (`tests/data/kb/docs`: a fictional coffee shop's FAQ and policies in
Japanese and English) into a fresh database through kaiwa's own pipeline, asks every question of
`tests/data/kb/questions.json`, and prints, per mode, the share of questions whose first hit (and
first three hits) come from an expected document, and the median and p95 query latency. Questions
sharing no search term with any of their expected documents are counted apart: that is where only
the dense ranking can help. A second table asks `JA_PARAPHRASES`: Japanese questions put in
everyday words rather than the documents' own (やめたい for 解約, 値段 for 価格), some answered only
by English documents. The time to index (and, with embeddings, to load the model) comes first.

    python bench/retrieval.py                                  # SQLite in a temporary directory
    python bench/retrieval.py --database-url postgresql+asyncpg://postgres@127.0.0.1/test
    python bench/retrieval.py --embeddings none --verbose
    python bench/retrieval.py --embeddings none --filler 5000     # latency beside 5,000 more docs

`--filler N` adds N documents of 40 shuffled corpus sentences each (about three chunks) around
the real ones, to see how latency grows with the corpus; the fillers repeat the answers, so the
hit rates then mean little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kaiwa.config import EmbeddingSettings
from kaiwa.knowledge.chunk import sentences
from kaiwa.knowledge.embed import Embedder, build_embedder
from kaiwa.knowledge.index import Indexer, Upload
from kaiwa.knowledge.ingest import Extracted
from kaiwa.knowledge.search import KnowledgeSearch, Mode
from kaiwa.knowledge.terms import index_terms
from kaiwa.store import knowledge
from kaiwa.store.bootstrap import ensure_demo
from kaiwa.store.db import create_engine, migrate, session_factory, transaction
from kaiwa.store.models import KnowledgeBase

CORPUS = Path(__file__).parent.parent / "tests" / "data" / "kb"

JA_PARAPHRASES: list[tuple[str, list[str]]] = [
    ("豆の値段が知りたい", ["pricing.md", "pricing_en.md"]),
    ("毎月の配達をやめるにはどうすれば？", ["cancellation.md", "cancellation_en.md"]),
    ("しばらくの間、届けるのを止めてほしい", ["pause_skip.md", "cancellation_en.md"]),
    ("お店が閉まっている曜日は？", ["hours.md"]),
    ("サインインできない", ["account.md"]),
    ("送ってもらうのにお金はかかる？", ["shipping.md"]),
    ("プレゼント用の包装はいくら？", ["gift.md"]),
    ("夜でも飲める眠くならないコーヒーはある？", ["allergy.md"]),
    ("家に道具がないので粉にして送ってほしい", ["grind.md"]),
    ("会社用にたくさん仕入れたい", ["wholesale_en.md"]),
    ("外国にも届けてもらえますか", ["shipping_en.md"]),
    ("問い合わせはどこにすればいい？", ["support.md"]),
    ("割引の番号はどこに入れるの？", ["coupons.md"]),
    ("貯まった点数はいつ消える？", ["points.md"]),
    ("自分の登録データを消してほしい", ["privacy.md"]),
    ("届いた品物が壊れていた", ["returns.md", "returns_en.md"]),
    ("買った豆はどうしまっておけばいい？", ["storage_en.md"]),
    ("誰がこの会社を始めたの？", ["company_en.md"]),
]
"""Japanese questions in other words than their answers' (written for this bench)."""


@dataclass(frozen=True)
class Question:
    text: str
    expected: frozenset[str]
    shares_terms: bool
    paraphrase: bool = False
    """One of `JA_PARAPHRASES`, not of the corpus's questions."""


@dataclass
class Row:
    mode: Mode
    top1: list[bool]
    top3: list[bool]
    latencies: list[float]
    misses: list[tuple[str, list[str]]]


def questions(docs: dict[str, str]) -> list[Question]:
    items = json.loads((CORPUS / "questions.json").read_text(encoding="utf-8"))
    asked = [(item["q"], item["docs"], False) for item in items]
    asked += [(text, expected, True) for text, expected in JA_PARAPHRASES]
    out = []
    for text, expected, paraphrase in asked:
        terms = set(index_terms(text))
        shares = any(terms & set(index_terms(docs[name])) for name in expected)
        out.append(Question(text, frozenset(expected), shares, paraphrase))
    return out


async def run(
    database_url: str, embedder: Embedder | None, *, repeat: int, filler: int = 0
) -> list[Row]:
    engine = create_engine(database_url)
    await migrate(engine)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        workspace, _ = await ensure_demo(session)
        base = await knowledge.create_knowledge_base(session, workspace.id, name="bench")
    if embedder is not None:
        # Loaded on first use: timed apart from indexing.
        started = time.perf_counter()
        await embedder.embed(["warm-up"], kind="query")
        print(f"loaded the embedding model in {time.perf_counter() - started:.1f} s")
    indexer = Indexer(sessions, embedder)
    names: dict[str, str] = {}
    texts: dict[str, str] = {}
    started = time.perf_counter()
    for path in sorted((CORPUS / "docs").iterdir()):
        data = path.read_bytes()
        texts[path.name] = data.decode()
        async with transaction(sessions) as session:
            document = await knowledge.add_document(
                session,
                base,
                title=path.name,
                source=path.name,
                content_type="text/markdown",
                size=len(data),
            )
        names[document.id] = path.name
        indexer.start(document.id, Upload(data, path.name, None), title=None)
    await indexer.join()
    print(f"indexed {len(names)} documents in {time.perf_counter() - started:.1f} s")
    if filler:
        started = time.perf_counter()
        await _fill(sessions, indexer, base, texts, filler)
        print(f"indexed {filler} filler documents in {time.perf_counter() - started:.1f} s")
    search = KnowledgeSearch(session_factory(engine, read_only=True), embedder)
    modes: list[Mode] = ["lexical"] if embedder is None else ["lexical", "dense", "hybrid"]
    rows = []
    asked = questions(texts)
    for mode in modes:
        row = Row(mode, [], [], [], [])
        for _ in range(repeat):
            for question in asked:
                began = time.perf_counter()
                hits = await search.search(workspace.id, [base.id], question.text, mode=mode)
                row.latencies.append(time.perf_counter() - began)
                if len(row.top1) < len(asked):
                    found = [names.get(hit.document_id, "filler") for hit in hits]
                    row.top1.append(bool(found) and found[0] in question.expected)
                    row.top3.append(bool(set(found[:3]) & question.expected))
                    if not row.top1[-1]:
                        row.misses.append((question.text, found[:3]))
        rows.append(row)
    await indexer.aclose()
    await engine.dispose()
    _print(rows, asked)
    return rows


async def _fill(
    sessions: async_sessionmaker[AsyncSession],
    indexer: Indexer,
    base: KnowledgeBase,
    texts: dict[str, str],
    count: int,
) -> None:
    pool = [text[start:end] for text in texts.values() for start, end in sentences(text)]
    pick = random.Random(7)
    for number in range(count):
        body = "\n".join(
            pick.choice(pool).replace("5", str(pick.randint(0, 99))) for _ in range(40)
        )
        async with transaction(sessions) as session:
            document = await knowledge.add_document(
                session,
                base,
                title=f"filler {number}",
                source="",
                content_type="text/plain",
                size=0,
            )
        indexer.start(document.id, Extracted(f"filler {number}", body, "text/plain"), title=None)
        if number % 50 == 49:
            await indexer.join()
    await indexer.join()


def _rate(values: list[bool], keep: list[bool] | None = None) -> str:
    chosen = [v for v, k in zip(values, keep or [True] * len(values), strict=True) if k]
    if not chosen:
        return "-"
    return f"{sum(chosen) / len(chosen):.0%} ({sum(chosen)}/{len(chosen)})"


def _print(rows: list[Row], asked: list[Question]) -> None:
    corpus = [not question.paraphrase for question in asked]
    disjoint = [not question.shares_terms and not question.paraphrase for question in asked]
    header = (
        f"{'mode':8} {'top-1':>12} {'top-3':>12} {'top-1 no shared term':>22} "
        f"{'p50 ms':>8} {'p95 ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ordered = sorted(row.latencies)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        print(
            f"{row.mode:8} {_rate(row.top1, corpus):>12} {_rate(row.top3, corpus):>12} "
            f"{_rate(row.top1, disjoint):>22} "
            f"{statistics.median(ordered) * 1000:8.1f} {p95 * 1000:8.1f}"
        )
    paraphrases = [question.paraphrase for question in asked]
    unshared = [question.paraphrase and not question.shares_terms for question in asked]
    print()
    header = f"{'mode':8} {'JA paraphrases top-1':>22} {'top-3':>12} {'top-1 no shared term':>22}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.mode:8} {_rate(row.top1, paraphrases):>22} {_rate(row.top3, paraphrases):>12} "
            f"{_rate(row.top1, unshared):>22}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    parser.add_argument("--embeddings", choices=["local", "none"], default="local")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of questions, for latency")
    parser.add_argument("--filler", type=int, default=0, help="extra generated documents")
    parser.add_argument("--verbose", action="store_true", help="list the questions missed")
    args = parser.parse_args()
    embedder = build_embedder(EmbeddingSettings(provider=args.embeddings))
    with tempfile.TemporaryDirectory() as directory:
        url = args.database_url or f"sqlite+aiosqlite:///{directory}/bench.db"
        rows = asyncio.run(run(url, embedder, repeat=args.repeat, filler=args.filler))
    if args.verbose:
        for row in rows:
            for question, found in row.misses:
                print(f"{row.mode:8} missed {question!r}: got {found}")


if __name__ == "__main__":
    main()
