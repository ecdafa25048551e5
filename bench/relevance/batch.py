"""Batch recommenders a user would pick instead of Attune, fitted here (numpy, scipy) on
a binary user-item matrix. They serve nothing: the per-user protocol scores them on the
same users and items as the system, for comparison.

- Most popular: the number of users who interacted with each item.
- Item k-NN: cosine similarity between item columns, each item keeping its
  ``neighbours`` most similar items; a user's score for an item sums its similarity to
  the user's items among those neighbours (Sarwar et al., 2001).
- EASE: the closed form ``B = I - P diag(1/diag(P))``, ``P = (X^T X + lambda I)^-1``
  (Steck, 2019); scores ``X B``.
- iALS: implicit alternating least squares with confidence ``1 + alpha`` on observed
  pairs (Hu, Koren and Volinsky, 2008), each factor row solved exactly per iteration.

Every function takes the interactions as a ``scipy.sparse`` CSR matrix (users x items,
1.0 where the user interacted) and returns dense scores or factors; :func:`top_items`
turns scores into lists, never recommending what the user has in the matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.linalg import lapack

Floats = npt.NDArray[np.float64]
Indices = npt.NDArray[np.intp]


def binary_matrix(rows: Indices, columns: Indices, shape: tuple[int, int]) -> sp.csr_matrix:
    """1.0 at each (row, column) pair (duplicates count once)."""
    data = np.ones(len(rows), dtype=np.float64)
    matrix = sp.csr_matrix((data, (rows, columns)), shape=shape)
    matrix.data[:] = 1.0
    return matrix


def popularity(matrix: sp.csr_matrix) -> Floats:
    """Users per item."""
    return np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel()


def cosine_neighbours(matrix: sp.csr_matrix, neighbours: int) -> sp.csr_matrix:
    """Item-item cosine similarity (items x items, zero diagonal), each row keeping its
    ``neighbours`` largest entries: row ``i`` holds item ``i``'s nearest items."""
    gram = (matrix.T @ matrix).tocsr().astype(np.float64)
    norms = np.sqrt(gram.diagonal())
    norms[norms == 0] = 1.0
    scale = sp.diags(1.0 / norms)
    similarity = (scale @ gram @ scale).tocsr()
    similarity.setdiag(0.0)
    similarity.eliminate_zeros()
    similarity.sort_indices()
    keep_rows, keep_cols, keep_data = [], [], []
    for row in range(similarity.shape[0]):
        start, end = similarity.indptr[row], similarity.indptr[row + 1]
        values = similarity.data[start:end]
        columns = similarity.indices[start:end]
        if len(values) > neighbours:
            best = np.argpartition(-values, neighbours - 1)[:neighbours]
            values, columns = values[best], columns[best]
        keep_rows.append(np.full(len(values), row))
        keep_cols.append(columns)
        keep_data.append(values)
    size = similarity.shape[0]
    if not keep_rows:
        return sp.csr_matrix((size, size))
    return sp.csr_matrix(
        (np.concatenate(keep_data), (np.concatenate(keep_rows), np.concatenate(keep_cols))),
        shape=(size, size),
    )


def item_knn_scores(history: sp.csr_matrix, neighbourhoods: sp.csr_matrix) -> Floats:
    """Scores (users x items): the similarity of each item to the user's items among
    that item's neighbours."""
    return np.asarray((history @ neighbourhoods.T).toarray(), dtype=np.float64)


def spd_inverse(matrix: Floats) -> Floats:
    """The inverse of a symmetric positive definite matrix through its Cholesky factor
    (about half the work of a general inverse)."""
    factor, info = lapack.dpotrf(matrix, lower=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"not positive definite (dpotrf info {info})")
    upper, info = lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"no inverse (dpotri info {info})")
    upper = np.triu(upper)
    return np.asarray(upper + np.triu(upper, 1).T, dtype=np.float64)


def ease_weights(matrix: sp.csr_matrix, regularization: float) -> Floats:
    """EASE's item-item weights ``B`` (zero diagonal)."""
    gram = np.asarray((matrix.T @ matrix).toarray(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += regularization
    inverse = spd_inverse(gram)
    weights = -inverse / np.diag(inverse)[None, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def ease_scores(history: sp.csr_matrix, weights: Floats) -> Floats:
    return np.asarray(history @ weights, dtype=np.float64)


@dataclass(frozen=True)
class Factors:
    users: Floats
    items: Floats

    def scores(self, rows: Indices | None = None) -> Floats:
        users = self.users if rows is None else self.users[rows]
        return users @ self.items.T


def _solve_rows(
    matrix: sp.csr_matrix, fixed: Floats, alpha: float, regularization: float
) -> Floats:
    """One half-step of iALS: every row of ``matrix`` solved against the ``fixed``
    factors. With ``c = 1 + alpha`` on observed pairs and preference 1 there:
    ``(Y^T Y + alpha Y_u^T Y_u + reg I) x_u = (1 + alpha) Y_u^T 1``."""
    size = fixed.shape[1]
    base = fixed.T @ fixed + regularization * np.eye(size)
    outer = (fixed[:, :, None] * fixed[:, None, :]).reshape(len(fixed), size * size)
    systems = base[None] + alpha * np.asarray(matrix @ outer).reshape(-1, size, size)
    targets = (1.0 + alpha) * np.asarray(matrix @ fixed)
    return np.asarray(np.linalg.solve(systems, targets[:, :, None])[:, :, 0], dtype=np.float64)


def ials(
    matrix: sp.csr_matrix, *, factors: int, regularization: float, alpha: float,
    iterations: int, seed: int,
) -> Factors:  # fmt: skip
    """User and item factors by alternating exact least-squares solves."""
    rng = np.random.default_rng(seed)
    users, items = matrix.shape
    item_factors = rng.normal(0.0, 0.01, size=(items, factors))
    user_factors = np.zeros((users, factors))
    transposed = matrix.T.tocsr()
    for _ in range(iterations):
        user_factors = _solve_rows(matrix, item_factors, alpha, regularization)
        item_factors = _solve_rows(transposed, user_factors, alpha, regularization)
    return Factors(user_factors, item_factors)


def top_items(scores: Floats, exclude: sp.csr_matrix, count: int) -> list[list[int]]:
    """The ``count`` best columns of each row of ``scores``, best first, never a column
    ``exclude`` marks for that row, nor a -inf score. Ties within the list go to the
    lower column."""
    masked = np.array(scores, dtype=np.float64, copy=True)
    rows, columns = exclude.nonzero()
    masked[rows, columns] = -np.inf
    out = []
    for row in masked:
        take = min(count, len(row))
        best = np.argpartition(-row, take - 1)[:take] if take < len(row) else np.arange(len(row))
        best = best[np.lexsort((best, -row[best]))]
        out.append([int(c) for c in best if np.isfinite(row[c])])
    return out


__all__ = [
    "Factors",
    "binary_matrix",
    "cosine_neighbours",
    "ease_scores",
    "ease_weights",
    "ials",
    "item_knn_scores",
    "popularity",
    "spd_inverse",
    "top_items",
]
