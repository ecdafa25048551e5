"""The two splits of the ratings.

Per user (:func:`per_user_split`): every user with at least :data:`MIN_USER_RATINGS`
ratings keeps, in time order, the first 60% for training, the next 20% for validation
and the last 20% (at least one each) for test. Training events are what the system
folds to answer validation; training and validation events, to answer test.

One global timeline (:func:`time_split`): cut before the test period and before each
validation window.

    |---------- training ----------|-- validation windows --|---- test ----|
                          validation cut-offs ...       test cut-off

Cut-offs are quantiles of the rating events: ``test_fraction`` of the events fall at or
after the test cut-off and ``validation_fraction`` in each validation window before it.
Everything is decided by the timestamp: an event belongs to the side of a cut-off its
time is on. With several validation windows (a rolling origin) each window is scored as
of its own cut-off.

Recommendations for a held-out period are asked "as of" its cut-off: after folding
exactly the events before it. The validation windows, all before the test cut-off, are
the only data any weight or parameter is chosen on; the test period is scored once,
with what validation chose.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.app.datasets import Rating

POSITIVE_RATING = 4.0
"""A rating at or above this is a positive: what a held-out period is scored against."""


@dataclass(frozen=True)
class TimeSplit:
    """Cut-offs on one timeline (unix seconds): one or more validation cut-offs (each
    opening a validation window that ends at the next cut-off), then the test cut-off."""

    first: int
    last: int
    validation_cutoffs: tuple[int, ...]
    test_cutoff: int

    def __post_init__(self) -> None:
        points = (self.first, *self.validation_cutoffs, self.test_cutoff, self.last)
        if not self.validation_cutoffs or list(points) != sorted(points):
            raise ValueError("cut-offs must lie within the timeline, in order, test last")

    @property
    def validation_cutoff(self) -> int:
        """The first validation cut-off: training for validation is what lies before it."""
        return self.validation_cutoffs[0]

    def validation_windows(self) -> list[tuple[int, int]]:
        """``[start, end)`` of each validation window, oldest first."""
        ends = (*self.validation_cutoffs[1:], self.test_cutoff)
        return list(zip(self.validation_cutoffs, ends, strict=True))

    def describe(self) -> dict[str, Any]:
        return {
            "first_event": day(self.first),
            "validation_cutoffs": [day(c) for c in self.validation_cutoffs],
            "test_cutoff": day(self.test_cutoff),
            "last_event": day(self.last),
        }


def day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def time_split(
    timestamps: Sequence[int],
    *,
    test_fraction: float = 0.1,
    validation_fraction: float = 0.1,
    validation_windows: int = 1,
) -> TimeSplit:
    """Cut-offs such that the last ``test_fraction`` of the events (by time) are the test
    period and each of the ``validation_windows`` windows before it holds
    ``validation_fraction`` of the events. Events sharing a cut-off's timestamp all fall
    after it."""
    if not timestamps:
        raise ValueError("no events to split")
    if not (0 < test_fraction < 1 and 0 < validation_fraction < 1) or validation_windows < 1:
        raise ValueError("fractions must be within (0, 1), with at least one window")
    if test_fraction + validation_windows * validation_fraction >= 1:
        raise ValueError("validation and test together must leave a training period")
    ordered = sorted(timestamps)
    count = len(ordered)

    def cutoff(fraction_after: float) -> int:
        position = min(count - 1, max(0, round(count * (1 - fraction_after))))
        return ordered[position]

    return TimeSplit(
        first=ordered[0],
        last=ordered[-1],
        validation_cutoffs=tuple(
            cutoff(test_fraction + k * validation_fraction)
            for k in range(validation_windows, 0, -1)
        ),
        test_cutoff=cutoff(test_fraction),
    )


def between(ratings: Iterable[Rating], start: int | None, end: int | None) -> list[Rating]:
    """The ratings with ``start <= timestamp < end`` (None: unbounded), in the given order."""
    return [
        r
        for r in ratings
        if (start is None or r.timestamp >= start) and (end is None or r.timestamp < end)
    ]


@dataclass(frozen=True)
class Holdout:
    """One held-out period: per user, what they rated before the cut-off (``history``, to
    exclude) and what they rated positively within the period and not before
    (``targets``, to find). Only users with at least one target are evaluated."""

    cutoff: int
    end: int | None
    history: dict[str, frozenset[str]] = field(default_factory=dict)
    targets: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def users(self) -> list[str]:
        """Users with a target, in a stable order (numeric ids numerically)."""
        return sorted(
            self.targets, key=lambda u: (not u.isdigit(), int(u) if u.isdigit() else 0, u)
        )

    def has_history(self, user_id: str) -> bool:
        return bool(self.history.get(user_id))

    @property
    def target_count(self) -> int:
        return sum(len(t) for t in self.targets.values())


def holdout(
    ratings: Iterable[Rating], cutoff: int, end: int | None, *, positive: float = POSITIVE_RATING
) -> Holdout:
    """The held-out period ``[cutoff, end)`` of ``ratings`` (any order)."""
    history: dict[str, set[str]] = {}
    later: dict[str, set[str]] = {}
    for rating in ratings:
        if rating.timestamp < cutoff:
            history.setdefault(rating.user_id, set()).add(rating.movie_id)
        elif (end is None or rating.timestamp < end) and rating.rating >= positive:
            later.setdefault(rating.user_id, set()).add(rating.movie_id)
    targets = {
        user: frozenset(items - history.get(user, set()))
        for user, items in later.items()
        if items - history.get(user, set())
    }
    return Holdout(
        cutoff=cutoff,
        end=end,
        history={user: frozenset(items) for user, items in history.items()},
        targets=targets,
    )


MIN_USER_RATINGS = 5
"""Users with fewer ratings are not evaluated per user (all their ratings train)."""
HOLDOUT_SHARE = 0.2
"""The share of each user's ratings held out for test, and for validation before it."""
TRAIN, VALIDATION, TEST = "train", "validation", "test"
Role = str


def per_user_split(
    ratings: Sequence[Rating], *, share: float = HOLDOUT_SHARE, min_ratings: int = MIN_USER_RATINGS
) -> list[Role]:
    """The role of each rating (aligned with ``ratings``): per user, in time order (ties
    in the given order), the last ``share`` (at least one) is test, the ``share`` before
    it (at least one) validation, the rest training. Users with fewer than
    ``min_ratings`` ratings only train."""
    positions: dict[str, list[int]] = {}
    for n, rating in enumerate(ratings):
        positions.setdefault(rating.user_id, []).append(n)
    roles = [TRAIN] * len(ratings)
    for owned in positions.values():
        if len(owned) < min_ratings:
            continue
        owned.sort(key=lambda n: ratings[n].timestamp)
        held = max(1, round(len(owned) * share))
        for n in owned[len(owned) - held :]:
            roles[n] = TEST
        for n in owned[len(owned) - 2 * held : len(owned) - held]:
            roles[n] = VALIDATION
    return roles


def per_user_holdout(
    ratings: Sequence[Rating], roles: Sequence[Role], period: Role, history: Collection[Role],
    cutoff: int, *, positive: float | None = POSITIVE_RATING,
) -> Holdout:  # fmt: skip
    """The ratings of role ``period`` as a held-out period: each user's ``history`` is
    what they rated in the ``history`` roles, their targets what they rated in
    ``period`` (at or above ``positive``; None: any rating) and not in their history.
    ``cutoff`` is the moment the system is read at (the latest folded event)."""
    seen: dict[str, set[str]] = {}
    later: dict[str, set[str]] = {}
    for rating, role in zip(ratings, roles, strict=True):
        if role in history:
            seen.setdefault(rating.user_id, set()).add(rating.movie_id)
        elif role == period and (positive is None or rating.rating >= positive):
            later.setdefault(rating.user_id, set()).add(rating.movie_id)
    targets = {
        user: frozenset(items - seen.get(user, set()))
        for user, items in later.items()
        if items - seen.get(user, set())
    }
    return Holdout(
        cutoff=cutoff,
        end=None,
        history={user: frozenset(items) for user, items in seen.items()},
        targets=targets,
    )


__all__ = [
    "HOLDOUT_SHARE",
    "MIN_USER_RATINGS",
    "POSITIVE_RATING",
    "TEST",
    "TRAIN",
    "VALIDATION",
    "Holdout",
    "TimeSplit",
    "between",
    "day",
    "holdout",
    "per_user_holdout",
    "per_user_split",
    "time_split",
]
