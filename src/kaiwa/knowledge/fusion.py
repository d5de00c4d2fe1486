"""Reciprocal rank fusion: one ranking out of several, by rank alone.

    fuse([[(7, 12.1), (3, 9.0)], [(3, 0.83), (9, 0.80)]])   # [(3, …), (7, …), (9, …)]

BM25 scores and cosine similarities are on scales that cannot be added; ranks can. A chunk's
fused score is the sum over rankings of `weight / (k + rank)`, scaled so that a chunk ranked first
by every ranking scores 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["RRF_K", "fuse"]

RRF_K = 60
Ranking = Sequence[tuple[int, float]]


def fuse(
    rankings: Sequence[Ranking], *, weights: Sequence[float] | None = None, k: int = RRF_K
) -> list[tuple[int, float]]:
    """`(id, score in (0, 1])`, best first; ties go to the smaller id."""
    weights = weights or [1.0] * len(rankings)
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, (item, _score) in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    best = sum(
        weight / (k + 1) for ranking, weight in zip(rankings, weights, strict=True) if ranking
    )
    if not best:
        return []
    return sorted(
        ((item, score / best) for item, score in fused.items()),
        key=lambda pair: (-pair[1], pair[0]),
    )
