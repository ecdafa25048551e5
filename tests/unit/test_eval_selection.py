"""Choosing the configuration on validation: the grid's best weighting of the best fold
variant, unless its lead over the configured defaults is within noise."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from bench.relevance.phases import Phase
from bench.relevance.runner import EvaluationConfig
from bench.relevance.selection import Choice, Ranked, Weights, select
from tests.unit.test_eval_runner import row

BEST: Weights = {"content": 0.25, "popular": 1.0}
CONFIGURED: Weights = {"content": 1.0, "popular": 1.0}
CONFIG: Any = EvaluationConfig(folder=None, resamples=500, seed=1)  # type: ignore[arg-type]


class ListsByWeights:
    """Stands in for the engine: a user's "candidates" map a weighting's label to the
    list it ranks."""

    async def rank(
        self, candidates: dict[str, list[str]], *, limit: int, weights: dict[str, float],
        diversity: float,
    ) -> tuple[str, list[Any]]:  # fmt: skip
        ranked = candidates["best" if weights == BEST else "configured"]
        return "personalized", [SimpleNamespace(item_id=i) for i in ranked[:limit]]


def validation_phase(best_hits: int, configured_hits: int, users: int = 40) -> Phase:
    """The first ``best_hits`` users find their target under the best weighting, the
    first ``configured_hits`` under the configured one; the others find nothing."""
    phase = Phase("validation")
    for n in range(users):
        phase.rows.append(row(str(n), 10, set(), {"t"}))
        phase.candidates.append(
            {  # type: ignore[arg-type]
                "best": ["t"] if n < best_hits else ["x"],
                "configured": ["t"] if n < configured_hits else ["x"],
            }
        )
    return phase


def variant(days: float, best_hits: int, configured_hits: int, users: int = 40) -> Ranked:
    """A fold variant whose grid holds the best weighting, popularity alone and the
    configured weighting, scored as the phase's lists score them."""
    engine: Any = ListsByWeights()
    rows: list[dict[str, Any]] = [
        {"weights": BEST, "ndcg@10": best_hits / users, "hit_rate@10": best_hits / users},
        {"weights": {"popular": 1.0}, "ndcg@10": 0.01, "hit_rate@10": 0.01},
        {
            "weights": CONFIGURED,
            "ndcg@10": configured_hits / users,
            "hit_rate@10": configured_hits / users,
        },
    ]
    ranking = sorted(
        ({**r, "order": n} for n, r in enumerate(rows)), key=lambda r: -float(r["ndcg@10"])
    )
    return Ranked(days, engine, validation_phase(best_hits, configured_hits, users), ranking)


async def test_the_defaults_stay_when_the_best_leads_within_noise() -> None:
    configured = variant(0.0, best_hits=40, configured_hits=39)
    chosen, record = await select([configured], Choice(configured, dict(CONFIGURED)), CONFIG)
    assert chosen.weights == CONFIGURED
    assert chosen.variant is configured
    assert record["kept_configured"]
    assert record["changes"] == []
    assert record["configured_position"] == 2
    assert record["difference"]["low"] <= 0 < record["difference"]["mean"]


async def test_the_grids_best_is_chosen_when_it_clearly_leads() -> None:
    configured = variant(0.0, best_hits=40, configured_hits=20)
    chosen, record = await select([configured], Choice(configured, dict(CONFIGURED)), CONFIG)
    assert chosen.weights == BEST
    assert record["changes"] == ["weights"]
    assert not record["kept_configured"]
    assert record["difference"]["low"] > 0


async def test_the_half_life_alone_changes_when_that_is_enough() -> None:
    configured = variant(0.0, best_hits=25, configured_hits=20)
    decayed = variant(365.0, best_hits=40, configured_hits=39)
    chosen, record = await select(
        [configured, decayed], Choice(configured, dict(CONFIGURED)), CONFIG
    )
    assert chosen.variant is decayed
    assert chosen.weights == CONFIGURED
    assert record["changes"] == ["popularity half-life"]
    assert record["best_popularity_half_life_days"] == 365.0
    assert record["configured_popularity_half_life_days"] == 0.0
    assert [v["popularity_half_life_days"] for v in record["variants"]] == [0.0, 365.0]
    assert record["variants"][1]["best"]["ndcg@10"] == 1.0
    assert record["variants"][1]["configured_weights_ndcg@10"] == 39 / 40
    assert record["variants"][1]["popular_alone"]["ndcg@10"] == 0.01
    assert [c["changes"] for c in record["considered"]] == [[], ["popularity half-life"]]


async def test_both_change_when_nothing_less_keeps_up() -> None:
    configured = variant(0.0, best_hits=20, configured_hits=20)
    decayed = variant(365.0, best_hits=40, configured_hits=20)
    chosen, record = await select(
        [configured, decayed], Choice(configured, dict(CONFIGURED)), CONFIG
    )
    assert chosen.variant is decayed
    assert chosen.weights == BEST
    assert record["changes"] == ["popularity half-life", "weights"]
    assert all(c["best_minus_this"]["low"] > 0 for c in record["considered"][:-1])


async def test_a_tie_between_variants_keeps_the_configured_one() -> None:
    other = variant(365.0, best_hits=30, configured_hits=30)
    configured = variant(0.0, best_hits=30, configured_hits=30)
    chosen, record = await select([other, configured], Choice(configured, dict(CONFIGURED)), CONFIG)
    assert chosen.variant is configured
    assert record["kept_configured"]
