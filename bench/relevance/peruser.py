"""The per-user temporal holdout, through the real system, with the batch references.

1. Split every user's ratings in time order (:func:`.split.per_user_split`): training,
   validation (the next 20%), test (the last 20%).
2. On an embedded stack of its own (the events topic then holds exactly this
   protocol's events), reading the vector index the global protocol's embedder filled
   with every movie: produce the training ratings in timestamp order and wait until
   every event is folded.
3. Validation, as of the latest training event: gather each validation user's
   candidates through :class:`QueryEngine`, excluding their training items; choose the
   weights (and the popularity half-life among the candidates passed in) with the same
   grid and rule as the global protocol (:mod:`.selection`).
4. Test, as of the latest validation event: produce and fold the validation ratings,
   gather every evaluated user's candidates once, excluding training and validation
   items; score every method against the test ratings of 4 or more (users without one
   are counted and left out), and against any test rating.
5. Once the stack is stopped, fit the batch references on the training ratings, choose
   their settings on validation, fit them again on training and validation and score
   them on the same test users (:mod:`.references`).
"""

from __future__ import annotations

import tempfile
import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.relevance.asking import gather_candidates
from bench.relevance.loading import check_counts, load_events, wait_for_all
from bench.relevance.methods import Method, baselines, blends, run_method, score
from bench.relevance.phases import Laps, Phase, rows_of
from bench.relevance.references import REFERENCES, Interactions, choose, reference_lists
from bench.relevance.runner import EvaluationConfig, choose_on_validation, ranking_settings
from bench.relevance.split import (
    HOLDOUT_SHARE,
    MIN_USER_RATINGS,
    POSITIVE_RATING,
    TEST,
    TRAIN,
    VALIDATION,
    Holdout,
    Role,
    day,
    per_user_holdout,
    per_user_split,
)
from bench.relevance.summary import criteria, paired, phase_summary
from bench.relevance.variants import fold_variants
from services.app.bootstrap import Service, open_dependencies
from services.app.datasets import (
    Rating,
    movielens_events,
    movielens_items,
    movielens_ratings,
)
from services.app.embedded import EmbeddedStack
from services.common.settings import Settings


def system_baselines() -> list[Method]:
    """The streaming baselines (the count of positive ratings is the global protocol's:
    here the batch most-popular takes its place)."""
    return [m for m in baselines() if m.kind != "count"]


def latest(ratings: Sequence[Rating], roles: Sequence[Role], keep: Collection[Role]) -> int:
    """One second after the latest rating of the ``keep`` roles: the moment to read at."""
    return 1 + max(r.timestamp for r, role in zip(ratings, roles, strict=True) if role in keep)


def folded_counts(
    ratings: Sequence[Rating], roles: Sequence[Role], keep: Collection[Role]
) -> Counter[str]:
    return Counter(r.user_id for r, role in zip(ratings, roles, strict=True) if role in keep)


def restrict(phase: Phase, held: Holdout, name: str) -> Phase:
    """The users of ``phase`` that ``held`` targets, with ``held``'s targets, scored
    again on the same lists."""
    position = {row.user_id: n for n, row in enumerate(phase.rows)}
    out = Phase(name, rows=rows_of(phase.rows[0].period if phase.rows else name, held))
    for key, lists in phase.lists.items():
        score(out, key, [lists[position[row.user_id]] for row in out.rows])
    return out


async def evaluate_per_user(
    config: EvaluationConfig, base: Settings, console: Console, vector_index: Path, *,
    popularity_half_lives: Sequence[float] = (),
) -> dict[str, Any]:  # fmt: skip
    """Run the protocol; the half-lives (the configured one is always first) are the
    fold variants validation chooses among. ``vector_index`` is the folder of the index
    the global protocol's embedder filled with these movies: content does not depend on
    the split, so it is read rather than embedded again (it must hold every movie)."""
    laps = Laps()
    lap = laps.lap

    tenant = config.tenant
    items = movielens_items(config.folder, tenant=tenant)
    ratings = movielens_ratings(config.folder)
    events = list(movielens_events(config.folder, tenant=tenant))
    catalog = [i.item_id for i in items]
    roles = per_user_split(ratings)
    role_counts = Counter(roles)
    evaluated = {r.user_id for r, role in zip(ratings, roles, strict=True) if role == TEST}
    console.print(
        f"per user: {len(evaluated)} users with >= {MIN_USER_RATINGS} ratings; "
        f"{role_counts[TRAIN]:,} training, {role_counts[VALIDATION]:,} validation, "
        f"{role_counts[TEST]:,} test ratings"
    )
    space = Interactions(sorted({r.user_id for r in ratings}), catalog)
    validation_clock = latest(ratings, roles, {TRAIN})
    test_clock = latest(ratings, roles, {TRAIN, VALIDATION})
    test_any = Phase("test, any rating")
    with tempfile.TemporaryDirectory(prefix="attune-eval-user-") as scratch:
        data_dir = (config.work_dir / "per-user") if config.work_dir else Path(scratch)
        async with EmbeddedStack(data_dir) as stack:
            run_id = uuid.uuid4().hex[:8]
            settings = stack.settings(base).model_copy(
                update={
                    "default_tenant": tenant,
                    "kafka_group_prefix": f"eval-user-{run_id}",
                    "redis_namespace": f"eval-user-{run_id}",
                    "vector_index_path": vector_index,
                }
            )
            half_lives = [settings.popularity_half_life_days, *popularity_half_lives]
            async with (
                open_dependencies(settings, (Service.query,)) as deps,
                fold_variants(deps, half_lives) as variants,
            ):
                index = deps.vector_index
                assert index is not None
                lap("start")
                training = [e for e, role in zip(events, roles, strict=True) if role == TRAIN]
                await load_events(
                    deps, console, training, "training events", config.wait_timeout_s,
                    consumers=len(variants),
                )  # fmt: skip

                async def indexed() -> float:
                    assert index is not None
                    return float(await index.count(tenant))

                await wait_for_all(
                    "movies in the index", len(items), indexed, config.wait_timeout_s, console
                )
                lap("load")

                rows = rows_of(
                    "validation",
                    per_user_holdout(ratings, roles, VALIDATION, {TRAIN}, validation_clock),
                )
                for variant in variants:
                    variant.read_as_of(validation_clock)
                    await check_counts(
                        variant.engine, tenant, folded_counts(ratings, roles, {TRAIN}), rows,
                        "the user's training ratings",
                    )  # fmt: skip
                    await gather_candidates(
                        variant.engine, variant.validation, rows, tenant, console,
                        f"per user, validation, {variant.label}",
                    )  # fmt: skip
                choice, selection, configured, fold = await choose_on_validation(
                    variants, config, console
                )
                chosen, engine, validation = choice.weights, fold.engine, fold.validation
                methods = [*blends(chosen, configured, selection["best"]), *system_baselines()]
                for method in methods:
                    await run_method(engine, validation, method, catalog, ratings, config.seed)
                lap("validation")

                held = [e for e, role in zip(events, roles, strict=True) if role == VALIDATION]
                await load_events(deps, console, held, "validation events", config.wait_timeout_s)
                rows = rows_of(
                    "test",
                    per_user_holdout(
                        ratings, roles, TEST, {TRAIN, VALIDATION}, test_clock, positive=None
                    ),
                )
                fold.read_as_of(test_clock)
                await check_counts(
                    engine, tenant, folded_counts(ratings, roles, {TRAIN, VALIDATION}), rows,
                    "the user's training and validation ratings",
                )  # fmt: skip
                await gather_candidates(engine, test_any, rows, tenant, console, "per user, test")
                for method in methods:
                    await run_method(engine, test_any, method, catalog, ratings, config.seed)
                lap("test")

    # computed once the stack is gone: they keep the CPU and would starve its consumers
    console.print("per user: batch references on validation")
    train_matrix = space.matrix(ratings, roles, {TRAIN})
    references = {
        kind: choose(kind, train_matrix, validation.rows, space, config.seed) for kind in REFERENCES
    }
    for kind, reference in references.items():
        score(validation, kind, reference.validation)
    lap("references, validation")
    console.print("per user: batch references on test")
    fitted = space.matrix(ratings, roles, {TRAIN, VALIDATION})
    for kind, reference in references.items():
        lists = reference_lists(kind, reference.setting, fitted, test_any.rows, space, config.seed)
        score(test_any, kind, lists)
    lap("references, test")
    positives = per_user_holdout(ratings, roles, TEST, {TRAIN, VALIDATION}, test_clock)
    test = restrict(test_any, positives, "test")
    others = [k for k in test.lists if k != "blend"]
    test_summary = phase_summary(test, len(catalog), config)
    paired_test = paired(test, others, config)
    all_methods: list[dict[str, Any]] = [
        *[
            {"key": m.key, "label": m.label, "description": m.description, "kind": "system",
             "weights": m.weights}
            for m in methods
        ],
        *[
            {"key": k, "label": REFERENCES[k][0], "description": REFERENCES[k][1],
             "kind": "batch", "setting": references[k].setting}
            for k in REFERENCES
        ],
    ]  # fmt: skip
    lap("report")
    return {
        "split": {
            "rule": f"per user, in time order: the last {HOLDOUT_SHARE:.0%} (at least one) "
            f"test, the {HOLDOUT_SHARE:.0%} before it validation, the rest training; "
            f"users with at least {MIN_USER_RATINGS} ratings",
            "users": len(space.users),
            "evaluated_users": len(evaluated),
            "ratings": dict(role_counts),
            "validation_read_at": day(validation_clock),
            "test_read_at": day(test_clock),
            "positive_rating": POSITIVE_RATING,
            "validation_users": len(validation.rows),
            "test_users_with_a_positive": len(test.rows),
            "test_users_without_a_positive": len(test_any.rows) - len(test.rows),
        },
        "methods": {m["key"]: m for m in all_methods},
        "baselines": [m.key for m in system_baselines()],
        "references": {
            k: {"setting": r.setting, "tried": r.tried, "seconds": r.seconds}
            for k, r in references.items()
        },
        "settings": ranking_settings(fold.settings),
        "chosen_weights": chosen,
        "configured_weights": configured,
        "selection": selection,
        "validation": phase_summary(validation, len(catalog), config),
        "test": test_summary,
        "test_any_rating": phase_summary(test_any, len(catalog), config),
        "paired_test": paired_test,
        "criteria": criteria(test_summary, paired_test),
        "seconds": laps.seconds,
        "timings": laps.timings,
    }


__all__ = ["evaluate_per_user", "folded_counts", "latest", "restrict", "system_baselines"]
