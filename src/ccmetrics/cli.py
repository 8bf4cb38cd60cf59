"""The ``ccmetrics`` command: a thin layer that parses options, calls one function and formats its answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import click

from . import __version__
from .config import SETTINGS_BY_NAME, Config
from .store import open_reader
from .store.queries import Filters, QueryError, summary


def settings_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Click options for settings of the table, each with its CCMETRICS_* environment variable."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            setting = SETTINGS_BY_NAME[name]
            kwargs: dict[str, Any] = {"envvar": setting.env, "show_envvar": True, "help": setting.help}
            if setting.type is bool:
                kwargs.update(is_flag=True, default=None)
            else:
                kwargs.update(type=click.Path(file_okay=False) if name == "data_dir" else setting.type,
                              default=None, show_default=setting.default is not None and str(setting.default))  # fmt: skip
            command = click.option(setting.flag, name, **kwargs)(command)
        return command

    return decorate


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
                           help="Only data whose attribute KEY equals VALUE (repeatable), e.g. team.id=platform.")(command)  # fmt: skip
    command = click.option("--until", metavar="TIME", help="Only data before TIME.")(command)
    command = click.option("--since", metavar="TIME", help="Only data from TIME on: ISO 8601, or 7d, 24h, 30m ago.")(command)  # fmt: skip
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ccmetrics")
def main() -> None:
    """What Claude Code costs your team, and what it does for it."""


@main.command()
@settings_options(*SETTINGS_BY_NAME)
def serve(**options: Any) -> None:
    """Receive Claude Code telemetry (OTLP) and serve the dashboard and API."""
    from .server import serve as run

    config = Config.from_options(**options)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(run(config))
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


@main.group()
def report() -> None:
    """Answers in the terminal, read straight from the database."""


@report.command("summary")
@settings_options("data_dir")
@filter_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the same as GET /api/summary).")
def report_summary(data_dir: str | None, since: str | None, until: str | None, filters: tuple[str, ...],
                   as_json: bool) -> None:  # fmt: skip
    """Totals: sessions, cost, tokens, code, commits, decisions, time, prompts, API calls."""
    config = Config.from_options(data_dir=data_dir)
    try:
        query = Filters.parse(since, until, filters)
        conn = open_reader(config.db_path)
    except (QueryError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    with contextlib.closing(conn):
        result = summary(conn, query)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        from .report import print_summary

        print_summary(result)
