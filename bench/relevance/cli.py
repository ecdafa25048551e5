"""``attune eval``: relevance measured through the real system."""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

eval_app = typer.Typer(
    help="Measure recommendation relevance on real data, through the real system.",
    no_args_is_help=True,
)

console = Console(stderr=True)


@eval_app.callback()
def _group() -> None:
    """Measure recommendation relevance on real data, through the real system."""


@eval_app.command("movielens")
def movielens(
    folder: Annotated[
        Path,
        typer.Argument(
            help="A MovieLens 'latest' folder (movies.csv, ratings.csv, tags.csv), "
            "e.g. ../shared/data/ml-latest-small.",
            exists=True,
            file_okay=False,
        ),
    ],
    report: Annotated[Path, typer.Option(help="Where to write the Markdown report.")] = Path(
        "docs/relevance.md"
    ),
    json_path: Annotated[
        Path, typer.Option("--json", help="Where to write the results as JSON.")
    ] = Path("docs/relevance.json"),
    test_fraction: Annotated[
        float, typer.Option(min=0.01, max=0.5, help="Share of the events after the test cut-off.")
    ] = 0.1,
    validation_fraction: Annotated[
        float,
        typer.Option(min=0.01, max=0.5, help="Share of the events between the two cut-offs."),
    ] = 0.1,
    validation_windows: Annotated[
        int,
        typer.Option(min=1, max=8, help="Consecutive validation windows before the test cut-off."),
    ] = 3,
    popularity_half_lives: Annotated[
        str,
        typer.Option(
            help="Candidate popularity half-lives in days, comma-separated (0: no decay); "
            "the user model is folded once per value and validation chooses among them "
            "with the weights. The configured ATTUNE_POPULARITY_HALF_LIFE_DAYS is always one.",
        ),
    ] = "0,90,180,365,730",
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and the random baseline.")] = (
        20240501
    ),
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Keep the embedded stack's data here (default: a temporary folder)."),
    ] = None,
) -> None:
    """Two protocols, each on its own embedded stack (real embedder, Kafka, user model):
    one global timeline split by time, as it would run in production, then a per-user
    temporal holdout with batch references (most popular, item k-NN, EASE, iALS)
    fitted on the same training events. Each chooses the blend's weights on validation
    and scores the test set once; write REPORT and JSON."""
    from bench.relevance.peruser import evaluate_per_user
    from bench.relevance.report import write_outputs
    from bench.relevance.runner import EvaluationConfig, evaluate_movielens
    from services.app.embedded import EmbeddedStack, StackError
    from services.common.settings import SettingsError, load_settings

    try:
        half_lives = tuple(float(v) for v in popularity_half_lives.split(",") if v.strip())
    except ValueError:
        half_lives = (-1.0,)
    if not half_lives or min(half_lives) < 0:
        console.print("[red]--popularity-half-lives: comma-separated days, each >= 0[/red]")
        raise typer.Exit(2)
    try:
        settings = load_settings()
    except SettingsError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    logging.basicConfig(level="WARNING", stream=sys.stderr)
    for noisy in ("faststream", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    scratch = tempfile.TemporaryDirectory(prefix="attune-eval-")
    work_dir = data_dir or Path(scratch.name)
    config = EvaluationConfig(
        folder=folder,
        test_fraction=test_fraction,
        validation_fraction=validation_fraction,
        validation_windows=validation_windows,
        popularity_half_lives=half_lives,
        resamples=resamples,
        seed=seed,
        work_dir=work_dir,
    )
    arguments = sys.argv[sys.argv.index("movielens") + 1 :] if "movielens" in sys.argv else []
    command = " ".join(["attune eval movielens", *arguments])
    started = time.monotonic()
    try:
        results = asyncio.run(evaluate_movielens(config, settings, console))
        chosen_half_life = results["settings"]["popularity_half_life_days"]
        results["per_user"] = asyncio.run(
            evaluate_per_user(
                config,
                settings,
                console,
                popularity_half_lives=[chosen_half_life],
                vector_index=EmbeddedStack(work_dir).vector_index_path,
            )
        )
    except StackError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    finally:
        scratch.cleanup()
    results["run"]["command"] = command
    results["run"]["seconds"] = round(time.monotonic() - started, 1)
    write_outputs(results, report, json_path)
    console.print(f"wrote {report} and {json_path} in {results['run']['seconds']:.0f} s")
    from bench.relevance.report import headline

    console.print(headline(results), markup=False, highlight=False)


__all__ = ["eval_app"]
