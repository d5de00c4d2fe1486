"""Reciprocal rank fusion."""

from __future__ import annotations

import pytest

from kaiwa.knowledge.fusion import fuse


def test_an_item_both_rankings_agree_on_wins_and_scores_one() -> None:
    fused = fuse([[(1, 9.0), (2, 5.0)], [(1, 0.9), (3, 0.8)]])
    assert fused[0] == (1, pytest.approx(1.0))
    assert [item for item, _ in fused] == [1, 2, 3]


def test_ties_go_to_the_smaller_id() -> None:
    assert [item for item, _ in fuse([[(7, 1.0)], [(3, 1.0)]])] == [3, 7]


def test_one_empty_ranking_leaves_the_other() -> None:
    assert fuse([[], [(5, 0.3), (4, 0.2)]]) == [
        (5, pytest.approx(1.0)),
        (4, pytest.approx(61 / 62)),
    ]
    assert fuse([[], []]) == []
    assert fuse([]) == []


def test_weights_favour_a_ranking() -> None:
    fused = fuse([[(1, 1.0), (2, 0.5)], [(2, 1.0), (1, 0.5)]], weights=[1.0, 2.0])
    assert fused[0][0] == 2
