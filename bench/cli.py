"""``attune bench`` / ``python -m bench``: run the benchmarks, print the table, write
the JSON, the plots and (for a full run) docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from services.app.datasets import default_movielens_folder

_CHECKOUT = Path(__file__).resolve().parents[1]
IN_CHECKOUT = (_CHECKOUT / "pyproject.toml").exists()
DEFAULT_OUT = _CHECKOUT / "bench" / "results" if IN_CHECKOUT else Path("bench-results")
DEFAULT_DOCS = _CHECKOUT / "docs" / "benchmarks.md" if IN_CHECKOUT else Path("benchmarks.md")

DEFAULT_DATA = default_movielens_folder()

bench_app = typer.Typer(
    help="Benchmarks: each figure next to its raw limit, on MovieLens, on an embedded stack.",
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _command() -> str:
    program = Path(sys.argv[0]).name
    if program in ("__main__.py", "-m"):
        program = "python -m bench"
    return " ".join([program, *sys.argv[1:]])


@bench_app.callback(invoke_without_command=True)
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes, for trying it out.")] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            help="Run one phase (repeat for several): embedder, usermodel (+memory), ingest, "
            "query (recommendations, recommendations_rps, similar, trending, search, ceiling, "
            "scaling), freshness; a figure's name "
            "selects its phase.",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Folder of the JSON (latest.json), plots and profiles.")
    ] = DEFAULT_OUT,
    data: Annotated[
        Path, typer.Option(help="The MovieLens latest-small folder.", file_okay=False)
    ] = DEFAULT_DATA,
    write_docs: Annotated[
        bool | None,
        typer.Option(
            "--write-docs/--no-write-docs",
            help="Write docs/benchmarks.md, its results (docs/benchmarks.json) and its plots. "
            "Default: only after a full run (neither --quick nor --only).",
        ),
    ] = None,
    docs: Annotated[Path, typer.Option(help="Where --write-docs writes.")] = DEFAULT_DOCS,
    profiles: Annotated[
        bool, typer.Option(help="py-spy the service behind each missed target.")
    ] = True,
    from_json: Annotated[
        Path | None,
        typer.Option(
            help="Run nothing: render the table, the plots and (with --write-docs) the docs "
            "of an earlier run's JSON.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Run the benchmarks (docs/benchmarks.md says how long the last run took)."""
    from bench import docs as docs_page
    from bench import report
    from bench.run import Options, run_bench, select_phases
    from services.app.embedded import StackError

    console = Console(width=None if sys.stdout.isatty() else 150)
    if from_json is not None:
        import json

        from bench.results import Results

        results = Results.from_json(json.loads(from_json.read_text()))
        plots = report.plots(results, out)
        report.print_table(results, console)
        if write_docs:
            console.print(f"docs: {docs_page.write_docs(results, docs, plots)}")
        return
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("faststream").setLevel(logging.WARNING)
    try:
        select_phases(only or ())
    except ValueError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    if not (data / "movies.csv").exists():
        console.print(f"[red]no MovieLens data in {data}: pass --data DIR[/red]")
        raise typer.Exit(2)
    options = Options(quick=quick, only=tuple(only or ()), out=out, data=data,
                      profiles=profiles, command=_command())  # fmt: skip
    try:
        results = asyncio.run(run_bench(options, console))
    except StackError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    plots = report.plots(results, out)
    path = report.write_json(results, out / "latest.json")
    report.print_table(results, console)
    console.print(f"results: {path}; plots: {', '.join(p.name for p in plots) or 'none'}")
    if write_docs if write_docs is not None else not (quick or only):
        written = docs_page.write_docs(results, docs, plots)
        console.print(f"docs: {written}")
    console.print(f"took {results.duration_s / 60:.1f} min; load average {results.load_after}")


def main() -> None:
    bench_app()


__all__ = ["bench_app", "main"]
