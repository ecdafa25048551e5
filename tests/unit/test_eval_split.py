"""The global time split and the held-out periods."""

from __future__ import annotations

import pytest

from bench.relevance.split import between, holdout, time_split
from services.app.datasets import Rating


def test_cut_offs_are_quantiles_of_the_events() -> None:
    split = time_split(list(range(100)), test_fraction=0.1, validation_fraction=0.1)
    assert split.test_cutoff == 90  # events 90..99 (10%) are the test period
    assert split.validation_cutoffs == (80,)
    assert split.validation_windows() == [(80, 90)]
    assert (split.first, split.last) == (0, 99)


def test_several_validation_windows_lie_back_to_back_before_the_test() -> None:
    split = time_split(list(range(1000)), test_fraction=0.1, validation_fraction=0.1,
                       validation_windows=3)  # fmt: skip
    assert split.validation_cutoffs == (600, 700, 800)
    assert split.validation_windows() == [(600, 700), (700, 800), (800, 900)]
    assert split.validation_cutoff == 600
    assert split.describe()["test_cutoff"] == "1970-01-01 00:15:00 UTC"


def test_events_sharing_the_cut_off_time_all_fall_after_it() -> None:
    timestamps = [1, 2, 3, 5, 5, 5, 5, 8, 9, 10]
    split = time_split(timestamps, test_fraction=0.5, validation_fraction=0.2)
    assert split.test_cutoff == 5
    assert [t for t in timestamps if t >= split.test_cutoff] == [5, 5, 5, 5, 8, 9, 10]


def test_the_order_of_the_input_does_not_matter() -> None:
    assert time_split([5, 1, 4, 2, 3, 9, 8, 7, 6, 0]) == time_split(list(range(10)))


@pytest.mark.parametrize(
    ("timestamps", "options"),
    [
        ([], {}),
        ([1, 2, 3], {"test_fraction": 0.0}),
        ([1, 2, 3], {"test_fraction": 0.5, "validation_fraction": 0.5}),
        ([1, 2, 3], {"validation_fraction": 0.4, "validation_windows": 3}),
        ([1, 2, 3], {"validation_windows": 0}),
    ],
)
def test_impossible_splits_are_refused(timestamps: list[int], options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"events|fractions|cut-offs|training"):
        time_split(timestamps, **options)  # type: ignore[arg-type]


RATINGS = [
    Rating("1", "a", 5.0, 10),
    Rating("1", "b", 2.0, 20),
    Rating("2", "a", 4.0, 30),
    Rating("1", "c", 4.0, 40),  # after the cut-off, positive
    Rating("1", "d", 3.5, 45),  # after, not positive
    Rating("1", "b", 5.0, 50),  # after, positive, but rated before the cut-off
    Rating("3", "a", 4.5, 55),  # a new user
    Rating("2", "e", 5.0, 70),  # after the end
]


def test_a_holdout_has_history_before_and_positive_new_targets_within() -> None:
    held = holdout(RATINGS, cutoff=35, end=60)
    assert held.users == ["1", "3"]  # user 2's only later rating is past the end
    assert held.targets == {"1": frozenset({"c"}), "3": frozenset({"a"})}
    assert held.history["1"] == frozenset({"a", "b"})  # every rating, whatever its value
    assert held.has_history("1")
    assert not held.has_history("3")
    assert held.target_count == 2
    assert holdout(RATINGS, cutoff=35, end=None).targets["2"] == frozenset({"e"})


def test_users_sort_numerically() -> None:
    ratings = [Rating(u, "x", 5.0, 10) for u in ("10", "9", "100", "a")]
    assert holdout(ratings, cutoff=0, end=None).users == ["9", "10", "100", "a"]


def test_between_is_half_open() -> None:
    assert [r.timestamp for r in between(RATINGS, 20, 45)] == [20, 30, 40]
    assert len(between(RATINGS, None, None)) == len(RATINGS)


def test_per_user_split_holds_out_each_users_latest_ratings() -> None:
    from bench.relevance.split import TEST, TRAIN, VALIDATION, per_user_split

    # user a: 10 ratings, given out of time order; user b: 5; user c: 4 (not evaluated)
    ratings = [Rating("a", f"m{t}", 4.0, t) for t in (9, 0, 8, 1, 7, 2, 6, 3, 5, 4)]
    ratings += [Rating("b", f"m{t}", 3.0, 100 + t) for t in range(5)]
    ratings += [Rating("c", f"m{t}", 5.0, 200 + t) for t in range(4)]
    roles = per_user_split(ratings)
    by_time = {(r.user_id, r.timestamp): role for r, role in zip(ratings, roles, strict=True)}
    assert [by_time["a", t] for t in range(10)] == [TRAIN] * 6 + [VALIDATION] * 2 + [TEST] * 2
    assert [by_time["b", 100 + t] for t in range(5)] == [TRAIN] * 3 + [VALIDATION, TEST]
    assert {by_time["c", 200 + t] for t in range(4)} == {TRAIN}


def test_per_user_holdout_targets_the_period_and_remembers_the_history() -> None:
    from bench.relevance.split import TEST, TRAIN, VALIDATION, per_user_holdout

    ratings = [Rating("a", "x", 5.0, 1), Rating("a", "y", 2.0, 2), Rating("a", "z", 4.0, 3),
               Rating("b", "x", 1.0, 1), Rating("b", "y", 3.0, 2)]  # fmt: skip
    roles = [TRAIN, VALIDATION, TEST, TRAIN, TEST]
    held = per_user_holdout(ratings, roles, TEST, {TRAIN, VALIDATION}, cutoff=4)
    assert held.targets == {"a": frozenset({"z"})}  # b's only test rating is below 4
    assert held.history == {"a": frozenset({"x", "y"}), "b": frozenset({"x"})}
    anything = per_user_holdout(ratings, roles, TEST, {TRAIN}, cutoff=4, positive=None)
    assert anything.targets == {"a": frozenset({"z"}), "b": frozenset({"y"})}
    assert anything.history["a"] == frozenset({"x"})
    assert held.cutoff == 4
