"""The batch recommenders on tiny matrices whose right answer is obvious: two groups of
users with two tastes, and one user who has seen part of the first taste."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from bench.relevance.batch import (
    binary_matrix,
    cosine_neighbours,
    ease_scores,
    ease_weights,
    ials,
    item_knn_scores,
    popularity,
    top_items,
)

# items 0-2: taste A, items 3-5: taste B, item 6: liked by a single B user
TASTES = [
    [0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1],
    [3, 4, 5], [3, 4, 5], [3, 4, 5, 6],
]  # fmt: skip
LEARNER = 3
"""Has items 0 and 1 of taste A: item 2 must come first for every personal method."""


def matrix() -> sp.csr_matrix:
    rows = np.array([u for u, items in enumerate(TASTES) for _ in items], dtype=np.intp)
    columns = np.array([i for items in TASTES for i in items], dtype=np.intp)
    return binary_matrix(rows, columns, (len(TASTES), 7))


def test_the_matrix_is_binary_even_with_duplicates() -> None:
    m = binary_matrix(np.array([0, 0, 1]), np.array([2, 2, 0]), (2, 3))
    assert m.toarray().tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]


def test_popularity_counts_users_per_item() -> None:
    assert popularity(matrix()).tolist() == [4.0, 4.0, 3.0, 3.0, 3.0, 3.0, 1.0]


def test_item_knn_finds_the_missing_item_of_the_taste() -> None:
    x = matrix()
    scores = item_knn_scores(x, cosine_neighbours(x, neighbours=2))
    lists = top_items(scores, x, 3)
    assert lists[LEARNER][0] == 2
    assert not set(lists[LEARNER]) & {0, 1}  # never what the user has


def test_item_knn_keeps_only_the_nearest_neighbours() -> None:
    similarity = cosine_neighbours(matrix(), neighbours=2)
    counts = np.diff(similarity.indptr)
    assert counts.max() == 2
    assert similarity.diagonal().tolist() == [0.0] * 7
    # item 2's two neighbours are items 0 and 1 (cosine 3/sqrt(12)), not taste B
    assert sorted(similarity[2].indices.tolist()) == [0, 1]
    assert np.isclose(similarity[2, 0], 3 / np.sqrt(12))


def test_ease_matches_the_closed_form() -> None:
    x = matrix()
    lam = 0.5
    dense = x.toarray()
    p = np.linalg.inv(dense.T @ dense + lam * np.eye(7))
    expected = np.eye(7) - p @ np.diag(1.0 / np.diag(p))
    weights = ease_weights(x, lam)
    assert np.allclose(weights, expected)
    assert np.allclose(np.diag(weights), 0.0)
    assert top_items(ease_scores(x, weights), x, 1)[LEARNER] == [2]


def test_ials_recommends_the_missing_item_of_the_taste() -> None:
    x = matrix()
    model = ials(x, factors=4, regularization=0.1, alpha=10.0, iterations=10, seed=1)
    assert model.users.shape == (7, 4)
    assert model.items.shape == (7, 4)
    assert top_items(model.scores(), x, 1)[LEARNER] == [2]
    # a taste-B user is sent to item 6, the only one of their taste they do not have
    assert top_items(model.scores(np.array([4])), x[[4]], 1) == [[6]]


def test_top_items_orders_masks_and_breaks_ties_by_column() -> None:
    scores = np.array([[0.5, 0.9, 0.5, -np.inf, 0.1], [1.0, 1.0, 1.0, 1.0, 1.0]])
    exclude = sp.csr_matrix(np.array([[0, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float64))
    assert top_items(scores, exclude, 10) == [[0, 2, 4], [0, 1, 2, 3, 4]]
    assert top_items(scores, exclude, 2) == [[0, 2], [0, 1]]


def test_the_cholesky_inverse_is_the_inverse() -> None:
    from bench.relevance.batch import spd_inverse

    dense = matrix().toarray()
    gram = dense.T @ dense + 2.0 * np.eye(7)
    assert np.allclose(spd_inverse(gram), np.linalg.inv(gram))
