"""Summaries of scored phases: means with bootstrap intervals, paired differences,
the verdict against the baselines and what the blend would need on users with history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.relevance.headroom import required_with_history
from bench.relevance.measures import (
    Resampling,
    bootstrap_indices,
    paired_difference,
    summarise,
)
from bench.relevance.phases import Phase


def summarise_rows(
    phase: Phase, rows: Sequence[int], catalog_size: int, config: Resampling,
    methods: Sequence[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    if not rows:
        return {"users": 0, "methods": {}}
    indices = bootstrap_indices(len(rows), resamples=config.resamples, seed=config.seed)
    out = {}
    for key in methods or list(phase.per_user):
        subset = [phase.per_user[key][n] for n in rows]
        lists = [phase.lists[key][n] for n in rows]
        summary = summarise(subset, lists, catalog_size, indices, confidence=config.confidence)
        out[key] = {name: e.as_dict() for name, e in summary.items()}
    return {"users": len(rows), "methods": out}


def phase_summary(phase: Phase, catalog_size: int, config: Resampling) -> dict[str, Any]:
    everyone = list(range(len(phase.rows)))
    summary: dict[str, Any] = {
        "users": len(phase.rows),
        "users_with_history": len(phase.where(lambda r: r.has_history)),
        "targets": sum(len(r.targets) for r in phase.rows),
        "all": summarise_rows(phase, everyone, catalog_size, config),
        "with_history": summarise_rows(
            phase, phase.where(lambda r: r.has_history), catalog_size, config
        ),
        "without_history": summarise_rows(
            phase, phase.where(lambda r: not r.has_history), catalog_size, config
        ),
    }
    if len(phase.periods) > 1:
        summary["periods"] = {
            period: {
                "users_with_history": len(
                    phase.where(lambda r, p=period: r.period == p and r.has_history)  # type: ignore[misc]
                ),
                **summarise_rows(
                    phase,
                    phase.where(lambda r, p=period: r.period == p),  # type: ignore[misc]
                    catalog_size,
                    config,
                ),
            }
            for period in phase.periods
        }
    return summary


def paired(phase: Phase, against: Sequence[str], config: Resampling) -> dict[str, Any]:
    indices = bootstrap_indices(len(phase.rows), resamples=config.resamples, seed=config.seed)
    out: dict[str, Any] = {}
    for key in against:
        out[key] = {
            metric: paired_difference(
                [m[metric] for m in phase.per_user["blend"]],
                [m[metric] for m in phase.per_user[key]],
                indices,
                confidence=config.confidence,
            ).as_dict()
            for metric in ("hit_rate@10", "ndcg@10")
        }
    return out


def verdict(summary: Mapping[str, Any], baseline_keys: Sequence[str]) -> dict[str, Any]:
    """Does the blend's mean lie above the upper bound of every baseline's interval
    (HitRate@10 and NDCG@10, all test users)?"""
    methods = summary["all"]["methods"]
    out: dict[str, Any] = {}
    for metric in ("hit_rate@10", "ndcg@10"):
        best = max(baseline_keys, key=lambda k: methods[k][metric]["mean"])
        blend = methods["blend"][metric]["mean"]
        out[metric] = {
            "blend": blend,
            "blend_low": methods["blend"][metric]["low"],
            "best_baseline": best,
            "best_baseline_mean": methods[best][metric]["mean"],
            "best_baseline_high": methods[best][metric]["high"],
            "beats_every_baseline": all(blend > methods[k][metric]["mean"] for k in baseline_keys),
            "outside_best_baseline_interval": blend > methods[best][metric]["high"],
        }
    return out


def required(summary: Mapping[str, Any], test_verdict: Mapping[str, Any]) -> dict[str, Any]:
    """What the blend would need on the users with history to clear the best baseline's
    upper bound over all users, given its mean on the users without history."""
    cold, warm = summary["without_history"], summary["with_history"]
    out: dict[str, Any] = {}
    for metric, v in test_verdict.items():
        best = v["best_baseline"]
        blend_cold = cold["methods"]["blend"][metric]["mean"] if cold["users"] else 0.0
        out[metric] = {
            "bound": v["best_baseline_high"],
            "best_baseline": best,
            "users": summary["users"],
            "with_history": warm["users"],
            "blend_without_history": blend_cold,
            "blend_with_history": warm["methods"]["blend"][metric]["mean"]
            if warm["users"]
            else None,
            "best_baseline_with_history": warm["methods"][best][metric]["mean"]
            if warm["users"]
            else None,
            "required_with_history": required_with_history(
                summary["users"], warm["users"], blend_cold, v["best_baseline_high"]
            ),
        }
    return out


NON_PERSONAL = ("popular", "trending", "most_popular", "random")
"""Methods whose list does not depend on the user (bar what they already have)."""
PERSONAL_REFERENCES = ("item_knn", "ease", "ials")


def criteria(summary: Mapping[str, Any], paired_test: Mapping[str, Any]) -> dict[str, Any]:
    """The per-user protocol's criteria on NDCG@10 (all evaluated users): the blend at
    least 1.10 times the best non-personal baseline with the paired interval of the
    difference above 0, at least item k-NN, at least 0.9 times EASE."""
    methods = summary["all"]["methods"]

    def ndcg(key: str) -> float:
        return float(methods[key]["ndcg@10"]["mean"])

    present = [k for k in NON_PERSONAL if k in methods]
    best = max(present, key=ndcg)
    blend = ndcg("blend")
    ratios = {
        key: (blend / ndcg(key) if ndcg(key) > 0 else None)
        for key in [best, *PERSONAL_REFERENCES]
        if key in methods
    }
    difference = paired_test[best]["ndcg@10"]

    def at_least(key: str, factor: float) -> bool:
        ratio = ratios.get(key)
        return ratio is not None and ratio >= factor

    return {
        "metric": "ndcg@10",
        "blend": blend,
        "best_non_personal": best,
        "best_non_personal_difference": difference,
        "ratios": ratios,
        "checks": [
            {
                "criterion": "blend >= 1.10 x the best non-personal baseline, with the "
                "paired 95% interval of the difference above 0",
                "ratio": ratios[best],
                "met": at_least(best, 1.10) and difference["low"] > 0,
            },
            {
                "criterion": "blend >= item k-NN",
                "ratio": ratios.get("item_knn"),
                "met": at_least("item_knn", 1.0),
            },
            {
                "criterion": "blend >= 0.9 x EASE",
                "ratio": ratios.get("ease"),
                "met": at_least("ease", 0.9),
            },
        ],
    }


__all__ = [
    "NON_PERSONAL",
    "PERSONAL_REFERENCES",
    "criteria",
    "paired",
    "phase_summary",
    "required",
    "summarise_rows",
    "verdict",
]
