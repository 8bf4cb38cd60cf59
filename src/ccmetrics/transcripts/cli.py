"""What ``ccmetrics import`` prints: a progress bar on long imports, then what was counted."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .importer import ImportResult, Progress, import_transcripts, watch

if TYPE_CHECKING:
    from rich.progress import Progress as Bar

SHOW_PROGRESS_BYTES = 256 << 20  # a bar for imports that read more than this


def run_import(db_path: Path, paths: list[Path] | None, workers: int | None, as_json: bool) -> ImportResult:
    bar: Bar | None = None
    task = None

    def progress(done: int, total: int) -> None:
        nonlocal bar, task
        if bar is None:
            if total < SHOW_PROGRESS_BYTES or as_json or not sys.stderr.isatty():
                return
            # Imported only for a long import: a re-import that finds nothing new should not pay for it.
            from rich.progress import BarColumn, DownloadColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            bar = Bar(
                "reading transcripts", BarColumn(), DownloadColumn(), TimeRemainingColumn(), transient=True
            )
            bar.start()
            task = bar.add_task("read", total=total)
        if task is not None:
            bar.update(task, completed=done)

    on_progress: Progress = progress
    try:
        result = import_transcripts(db_path, paths, workers=workers, progress=on_progress)
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if bar is not None:
            bar.stop()
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        print_result(result)
    return result


def print_result(result: ImportResult) -> None:
    if not result.files_read:
        click.echo(f"{result.files} transcripts, nothing new ({result.seconds:.2f} s)")
        return
    tokens = ", ".join(f"{kind} {count:,}" for kind, count in result.tokens.items())
    click.echo(
        f"read {result.files_read} of {result.files} transcripts ({result.bytes_read / 1e6:,.1f} MB) in "
        f"{result.seconds:.2f} s: {result.messages:,} messages in {result.sessions:,} sessions"
        + (f", {result.updated:,} with more output than before" if result.updated else "")
    )
    click.echo(f"tokens: {tokens}")
    click.echo(
        f"cost: ${result.cost_usd:,.4f} (Claude Code's own where it wrote one, else {result.price_table})"
    )
    for model, messages in sorted(result.unpriced.items()):
        click.echo(f"no price for {model}: {messages:,} messages not in the cost", err=True)
    if result.skipped:
        click.echo(f"not counted: {result.skipped:,} synthetic or error messages")


def run_watch(db_path: Path, paths: list[Path] | None, as_json: bool) -> None:
    def show(result: ImportResult) -> None:
        if as_json:
            click.echo(json.dumps(result.to_json()))
        else:
            print_result(result)
        sys.stdout.flush()  # as it happens, to a pipe too

    try:
        watch(db_path, paths, show)
    except (OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
