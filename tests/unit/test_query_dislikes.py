"""Negative feedback pushes recommendations down: over plain numbers (the blend, tag
scores, closeness to disliked items) and through the engine over the fakes of
test_query_engine."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.query import Signal
from services.common.vectorindex import ItemFilter, StoredItem, unit_rows
from services.query.dislikes import closer_to_disliked, net_of_disliked
from services.query.ranking import blend
from services.query.signals import tag_affinity_scores
from tests.unit.test_query_engine import ITEMS, TENANT, FakeReader, engine


def tagged(item_id: str, *tags: str) -> StoredItem:
    return StoredItem(TENANT, item_id, 1, {"tags": list(tags)})


def test_a_negative_score_pushes_down_by_its_weight_times_the_dislike_factor() -> None:
    signals: dict[Signal, dict[str, float]] = {
        "popular": {"liked": 0.5, "disliked": 1.0},
        "tags": {"liked": 0.5, "disliked": -0.8},
    }
    weights: dict[Signal, float] = {"popular": 1.0, "tags": 0.5}
    details: dict[Signal, dict[str, str]] = {
        "tags": {"disliked": "carries tags this user disliked: crime"}
    }
    ranked = blend(signals, weights, details, against=2.0)
    assert [b.item_id for b in ranked] == ["liked", "disliked"]
    disliked = ranked[1]
    assert disliked.score == pytest.approx(1.0 - 2.0 * 0.5 * 0.8)
    penalty = disliked.reasons[-1]  # the ones that push down come last
    assert (penalty.signal, penalty.weight, penalty.contribution) == ("tags", 1.0, -0.8)
    assert penalty.detail == "carries tags this user disliked: crime"
    assert blend(signals, weights, against=0.0)[0].item_id == "disliked"


def test_tags_the_user_dislikes_count_against_the_items_that_carry_them() -> None:
    affinity = {"cooking": 6.0, "herbs": 2.0, "detective": -4.0, "mystery": -1.0}
    items = [
        tagged("pasta", "cooking"),
        tagged("herb-garden", "cooking", "herbs"),
        tagged("whodunit", "detective", "mystery"),
        tagged("noir", "detective"),
        tagged("puzzle", "mystery"),
        tagged("garden-murder", "detective", "herbs", "cooking"),  # liked more than not
        tagged("plain", "unknown"),
    ]
    scores, details = tag_affinity_scores(items, affinity)
    assert scores["herb-garden"] == 1.0
    assert scores["pasta"] == pytest.approx(0.75)
    assert scores["whodunit"] == -1.0  # capped: the most disliked tag and more
    assert scores["noir"] == -1.0  # the most disliked tag alone
    assert scores["puzzle"] == pytest.approx(-0.25)
    assert scores["garden-murder"] == pytest.approx(0.5)
    assert "plain" not in scores
    assert details["whodunit"] == "carries tags this user disliked: detective, mystery"
    assert details["pasta"] == "matches this user's interest in cooking"


def similarity(items: list[str], to: list[str]) -> np.ndarray:
    rows = unit_rows([ITEMS[i][0] for i in items])
    return rows @ unit_rows([ITEMS[i][0] for i in to]).T if to else np.zeros((len(items), 0))


def test_items_closer_to_a_disliked_item_than_to_any_liked_one() -> None:
    candidates, disliked = ["orbit", "mars", "picnic"], ["apollo", "pasta"]
    near = closer_to_disliked(
        candidates, similarity(candidates, disliked), similarity(candidates, ["bread"]), disliked
    )
    assert set(near) == {"orbit", "mars", "picnic"}
    assert near["orbit"][0] == "apollo"
    assert near["orbit"][1] == pytest.approx(0.95 - 0.31, abs=1e-3)  # to apollo - to bread
    assert closer_to_disliked(
        ["pasta"], similarity(["pasta"], ["apollo"]), similarity(["pasta"], ["bread"]), ["apollo"]
    ) == {}  # fmt: skip
    nothing = similarity(["orbit"], [])
    assert closer_to_disliked(["orbit"], nothing, nothing, []) == {}


def test_net_of_disliked_subtracts_over_both() -> None:
    assert net_of_disliked({"a": 2.0, "b": 1.0}, {"b": 3.0, "c": 1.0}) == {
        "a": 2.0, "b": -2.0, "c": -1.0,
    }  # fmt: skip


async def test_what_a_user_disliked_and_what_resembles_it_ranks_below_the_rest() -> None:
    # Ann liked bread and disliked Apollo. Orbit and Mars (space, like Apollo) are the
    # most popular, trending, and co-occur with Apollo (Orbit with bread too); Pasta
    # (cooking, like bread) is barely known: it has only its content and tags.
    reader = FakeReader(
        recent={"ann": [("bread", 3.0), ("apollo", -2.0)]},
        trending=[("orbit", 9.0), ("mars", 8.0)],
        popular=[("orbit", 400.0), ("mars", 300.0), ("pasta", 10.0)],
        co={"bread": [("orbit", 1.0)], "apollo": [("orbit", 5.0), ("mars", 4.0)]},
        tags={"ann": {"cooking": 3.0, "space": -2.0}},
    )
    strategy, results = await engine(reader, dislike_factor=2.0).recommendations(
        TENANT, "ann", limit=10, item_filter=ItemFilter(tenant=TENANT)
    )
    assert strategy == "personalized"
    ranked = [r.item_id for r in results]
    assert ranked.index("pasta") < ranked.index("orbit")
    assert ranked.index("pasta") < ranked.index("mars")
    orbit = {r.signal: r for r in next(r for r in results if r.item_id == "orbit").reasons}
    assert orbit["tags"].contribution < 0
    assert orbit["tags"].detail == "carries tags this user disliked: space"
    assert orbit["content"].contribution < 0
    assert "'Apollo', which this user disliked" in (orbit["content"].detail or "")
    assert orbit["cooccurrence"].contribution < 0
    assert "'Apollo', which this user disliked" in (orbit["cooccurrence"].detail or "")
