"""The batch references on a tiny split: fitted on the right roles, lists in catalog
ids, never what the user has, settings chosen on validation."""

from __future__ import annotations

from bench.relevance.phases import rows_of
from bench.relevance.references import Interactions, choose, reference_lists
from bench.relevance.split import TEST, TRAIN, VALIDATION, per_user_holdout
from services.app.datasets import Rating

# taste A: a1-a3, taste B: b1-b3; "lone" has one rating (no model knows it)
RATINGS = [
    *[Rating(u, m, 5.0, 1) for u in ("1", "2", "3") for m in ("a1", "a2", "a3")],
    *[Rating(u, m, 5.0, 1) for u in ("4", "5", "6") for m in ("b1", "b2", "b3")],
    Rating("6", "lone", 5.0, 1),
    Rating("7", "a1", 5.0, 1), Rating("7", "a2", 4.0, 2), Rating("7", "a3", 5.0, 3),
]  # fmt: skip
ROLES = [TRAIN] * (len(RATINGS) - 2) + [VALIDATION, TEST]
CATALOG = ["a1", "a2", "a3", "b1", "b2", "b3", "lone", "never"]


def space() -> Interactions:
    return Interactions(sorted({r.user_id for r in RATINGS}), CATALOG)


def test_the_matrix_holds_only_the_roles_asked_for() -> None:
    s = space()
    train = s.matrix(RATINGS, ROLES, {TRAIN})
    both = s.matrix(RATINGS, ROLES, {TRAIN, VALIDATION})
    seven = s.user_row["7"]
    assert [CATALOG[c] for c in train[seven].indices] == ["a1"]
    assert sorted(CATALOG[c] for c in both[seven].indices) == ["a1", "a2"]


def test_references_find_the_taste_and_never_return_the_users_items() -> None:
    s = space()
    train = s.matrix(RATINGS, ROLES, {TRAIN})
    rows = rows_of("validation", per_user_holdout(RATINGS, ROLES, VALIDATION, {TRAIN}, 2))
    assert [r.user_id for r in rows] == ["7"]
    settings: list[tuple[str, dict[str, float]]] = [
        ("item_knn", {"neighbours": 2.0}),
        ("ease", {"lambda": 1.0}),
        ("ials", {"factors": 4, "regularization": 0.1, "alpha": 10.0}),
    ]
    for kind, setting in settings:
        ranked = reference_lists(kind, setting, train, rows, s, seed=1)[0]
        assert ranked[0] in {"a2", "a3"}, kind
        assert "a1" not in ranked, kind  # the user's training item
        assert "lone" not in ranked, kind  # fewer than two users: unknown to the models
    popular = reference_lists("most_popular", {}, train, rows, s, seed=1)[0]
    assert "a1" not in popular
    assert set(popular) == set(CATALOG) - {"a1"}  # the whole catalog, zero counts last


def test_the_setting_is_chosen_on_validation() -> None:
    s = space()
    train = s.matrix(RATINGS, ROLES, {TRAIN})
    rows = rows_of("validation", per_user_holdout(RATINGS, ROLES, VALIDATION, {TRAIN}, 2))
    chosen = choose("ease", train, rows, s, seed=1)
    assert len(chosen.tried) == 5
    best = max(t["ndcg@10"] for t in chosen.tried)
    first_best = next(t for t in chosen.tried if round(t["ndcg@10"], 9) == round(best, 9))
    assert chosen.setting == first_best["setting"]
    assert chosen.validation == reference_lists("ease", chosen.setting, train, rows, s, 1)
