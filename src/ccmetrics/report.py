"""Terminal rendering of the answers (rich tables)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


def _money(value: float | None) -> str:
    return "—" if value is None else f"${value:,.4f}"


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _others(row: dict[str, Any]) -> str | None:
    """The label of the entry that adds up the models or users past the first ones listed."""
    return f"others ({row['others']:,})" if row.get("others") else None


def _name_column(table: Table, header: str) -> None:
    """A left column of names that folds a long one onto more lines, where rich would end it in an ellipsis
    ("claude-op…") and leave two models alike."""
    table.add_column(header, overflow="fold")


def print_summary(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    tokens, lines, decisions, active = (
        result["tokens"],
        result["lines_of_code"],
        result["edit_decisions"],
        result["active_time_seconds"],
    )
    totals = Table(title="Claude Code usage", show_header=False, title_justify="left")
    totals.add_column(style="bold")
    totals.add_column(justify="right")
    for label, value in (
        ("Sessions", _number(result["sessions"])),
        ("Cost", _money(result["cost_usd"])),
        ("Tokens in / out", f"{_number(tokens['input'])} / {_number(tokens['output'])}"),
        ("Cache read / created", f"{_number(tokens['cache_read'])} / {_number(tokens['cache_creation'])}"),
        ("Cache efficiency", _percent(result["cache_efficiency"])),
        ("Cost per 1K output tokens", _money(result["cost_per_1k_output_tokens"])),
        ("Lines added / removed", f"{_number(lines['added'])} / {_number(lines['removed'])}"),
        ("Commits", _number(result["commits"])),
        ("Pull requests", _number(result["pull_requests"])),
        ("Edits accepted / rejected", f"{_number(decisions['accept'])} / {_number(decisions['reject'])}"),
        ("Active time user / CLI (s)", f"{_number(active['user'])} / {_number(active['cli'])}"),
        ("Productivity ratio (CLI/user)", _number(result["productivity_ratio"])),
        ("Prompts", _number(result["prompts"])),
        ("Average prompt length", _number(result["avg_prompt_length"])),
        ("API requests / errors", f"{_number(result['api_requests'])} / {_number(result['api_errors'])}"),
    ):
        totals.add_row(label, value)
    console.print(totals)

    if result["by_model"]:
        models = Table(title="By model", title_justify="left")
        _name_column(models, "model")
        for column in ("cost", "input", "output", "cache\nread", "cache\ncreated", "API\nrequests"):
            models.add_column(column, justify="right")
        for row in result["by_model"]:
            t = row["tokens"]
            models.add_row(
                Text(_others(row) or row["model"]),  # as plain text, never read as rich's markup
                _money(row["cost_usd"]),
                _number(t["input"]),
                _number(t["output"]),
                _number(t["cache_read"]),
                _number(t["cache_creation"]),
                _number(row["api_requests"]),
            )
        console.print(models)

    if result["by_user"]:
        users = Table(title="By user", title_justify="left")
        _name_column(users, "user")
        for column in ("sessions", "cost", "tokens", "lines +/-", "commits", "prompts"):
            users.add_column(column, justify="right")
        for row in result["by_user"]:
            # The name shown for the user (people.py); as plain text, never read as rich's markup.
            name = Text(_others(row) or row.get("user_name") or row["user_email"] or row["user_id"])
            lines_row = (
                f"{_number(row['lines_of_code']['added'])} / {_number(row['lines_of_code']['removed'])}"
            )
            users.add_row(
                name,
                _number(row["sessions"]),
                _money(row["cost_usd"]),
                _number(sum(row["tokens"].values())),
                lines_row,
                _number(row["commits"]),
                _number(row["prompts"]),
            )
        console.print(users)

    sources = result.get("sources")
    if sources and sources["transcript"]["sessions"]:
        where = Table(title="Where the numbers come from", title_justify="left")
        for column in ("source", "sessions", "cost", "tokens"):
            where.add_column(column, justify="left" if column == "source" else "right")
        for source in ("telemetry", "transcript"):
            part = sources[source]
            where.add_row(
                source,
                _number(part["sessions"]),
                _money(part["cost_usd"]),
                _number(sum(part["tokens"].values())),
            )
        where.add_row("both (counted from telemetry)", _number(sources["both"]["sessions"]), "", "")
        console.print(where)
        transcript = sources["transcript"]
        if transcript.get("price_table"):
            console.print(
                Text(f"Transcript costs Claude Code did not write are priced by {transcript['price_table']}.")
            )
        for model, count in transcript.get("unpriced_models", {}).items():
            console.print(
                Text(f"No price for {model}: {_number(count)} tokens not in the cost.", style="bold red")
            )
    for key, title in (("by_project", "By project"), ("by_branch", "By project and branch")):
        if result.get(key):
            places = Table(title=title, title_justify="left")
            _name_column(places, "project")
            if key == "by_branch":
                _name_column(places, "branch")
            for column in ("sessions", "cost", "tokens"):
                places.add_column(column, justify="right")
            for row in result[key][:20]:
                cells: list[Text | str] = [Text(row["name"])]  # folder names: text, never markup
                if key == "by_branch":
                    cells.append(Text(row["git_branch"] or "-"))
                places.add_row(
                    *cells,
                    _number(row["sessions"]),
                    _money(row["cost_usd"]),
                    _number(sum(row["tokens"].values())),
                )
            console.print(places)
