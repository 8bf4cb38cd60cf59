"""The ``ccmetrics`` command: a thin layer that parses options, calls one function and formats its answer.

Each command imports what it needs when it runs: a hook that runs ``ccmetrics push`` or ``import`` at the end
of every Claude Code session should not pay for the server's modules."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import __version__, jsontext
from .config import SETTINGS_BY_NAME, Config

if TYPE_CHECKING:
    from .access.people import Person
    from .access.store import AccessStore, TokenRecord

T = TypeVar("T")


def settings_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Click options for settings of the table, each with its CCMETRICS_* environment variable."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            setting = SETTINGS_BY_NAME[name]
            kwargs: dict[str, Any] = {"envvar": setting.env, "show_envvar": True, "help": setting.help}
            if setting.type is bool:
                kwargs.update(is_flag=True, default=None)
            else:
                kwargs.update(
                    type=_click_type(name, setting.type),
                    default=None,
                    show_default=setting.default is not None and str(setting.default),
                )
            command = click.option(setting.flag, name, **kwargs)(command)
        return command

    return decorate


def _click_type(name: str, type_: type) -> Any:
    if type_ is Path:
        return click.Path(file_okay=False) if name == "data_dir" else click.Path(dir_okay=False)
    return type_


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--filter",
        "filters",
        multiple=True,
        metavar="KEY=VALUE",
        help="Only data whose attribute KEY equals VALUE (repeatable), e.g. team.id=platform.",
    )(command)
    command = click.option("--until", metavar="TIME", help="Only data before TIME.")(command)
    command = click.option(
        "--since", metavar="TIME", help="Only data from TIME on: ISO 8601, or 7d, 24h, 30m ago."
    )(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ccmetrics")
def main() -> None:
    """What Claude Code costs your team, and what it does for it."""


@main.command()
@settings_options(*SETTINGS_BY_NAME)
def serve(**options: Any) -> None:
    """Receive Claude Code telemetry (OTLP) and serve the dashboard and API."""
    from . import tls
    from .access.exposure import Unprotected
    from .server import serve as run
    from .web.app import check_dashboard_settings
    from .web.auth import WebAccess

    config = Config.from_options(**options)
    try:
        check_dashboard_settings(config)
        WebAccess.from_config(config)
        config.kept()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if config.alerts is not None:
        from .alerts.rules import RulesError, load

        try:
            load(config.alerts)
        except RulesError as exc:
            raise click.UsageError(f"--alerts:\n{exc}") from None
    try:
        certificate = tls.load(config.tls_cert, config.tls_key)
    except tls.TlsError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        _run_event_loop(run(config, certificate))
    except (OSError, Unprotected) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


def _run_event_loop(coro: Any) -> None:
    """uvloop where it is installed: the receiver's hot path is network I/O."""
    try:
        import uvloop
    except ImportError:
        import asyncio

        asyncio.run(coro)
    else:
        uvloop.run(coro)


@main.group()
def report() -> None:
    """Answers in the terminal, read straight from the database."""


@report.command("summary")
@settings_options("data_dir")
@filter_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the same as GET /api/summary).")
def report_summary(
    data_dir: str | None, since: str | None, until: str | None, filters: tuple[str, ...], as_json: bool
) -> None:
    """Totals: sessions, cost, tokens, code, commits, decisions, time, prompts, API calls."""
    from .store import StoreOutdated, open_reader, read_transaction
    from .store.filters import Filters, QueryError
    from .store.summary import summary

    config = Config.from_options(data_dir=data_dir)
    try:
        query = Filters.parse(since, until, filters)
        conn = open_reader(config.db_path)
    except (QueryError, FileNotFoundError, StoreOutdated) as exc:
        raise click.ClickException(str(exc)) from None
    with contextlib.closing(conn), read_transaction(conn):  # one snapshot: its numbers agree
        result = summary(conn, query, aliases=_aliases(config))
    if as_json:
        click.echo(jsontext.dumps(result, indent=2))
    else:
        from .report import print_summary

        print_summary(result)


def _read_access(config: Config, read: Callable[[AccessStore], T], default: T) -> T:
    """What ``read`` finds in the data directory's access file; ``default`` while there is none."""
    from .access.store import AccessStore

    try:
        access = AccessStore(config.access_path, create=False)
    except FileNotFoundError:
        return default
    with contextlib.closing(access):
        return read(access)


def _change_access(config: Config, change: Callable[[AccessStore], None], missing: str) -> None:
    """Apply ``change`` to the data directory's access file; ``missing``: what to say when there is none.
    A refused change (a token, person or alias that cannot be) is the command's error."""
    from .access.people import PersonError
    from .access.store import AccessStore, AliasError
    from .access.tokens import TokenError

    try:
        access = AccessStore(config.access_path, create=False)
    except FileNotFoundError:
        raise click.ClickException(f"{missing}: none exists in {config.data_dir}") from None
    with contextlib.closing(access):
        try:
            change(access)
        except (TokenError, PersonError, AliasError) as exc:
            raise click.ClickException(str(exc)) from None


def _echo_table(rows: Sequence[Sequence[str]]) -> None:
    """Rows as aligned columns, the first row the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@main.group()
def token() -> None:
    """Tokens that senders and readers show: made here, checked by a running server at once."""


@token.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["ingest", "viewer", "admin"]),
    required=True,
    help="ingest: sends telemetry; viewer: reads; admin: both.",
)
@click.option("--user", metavar="EMAIL", help="Everything this token sends is stored as this user.email.")
@click.option("--team", help="Everything this token sends is stored as this team.id.")
@click.option(
    "--expires", metavar="WHEN", help="A span from now (90d, 12h, 2w) or an ISO 8601 time [default: never]."
)
@settings_options("data_dir")
def token_create(
    name: str, role: str, user: str | None, team: str | None, expires: str | None, data_dir: str | None
) -> None:
    """Make a token; it is printed once, and only its SHA-256 is kept."""
    from .access.store import AccessStore
    from .access.tokens import Role, TokenError, expiry_ns

    config = Config.from_options(data_dir=data_dir)
    try:
        expires_ns = expiry_ns(expires)
        access = AccessStore(config.access_path)
        with contextlib.closing(access):
            secret = access.create(name, Role(role), user=user, team=team, expires_ns=expires_ns)
    except TokenError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(secret)
    click.echo(
        f"Token {name!r} ({role}) created. It is shown only this once; give it to Claude Code with "
        "`ccmetrics setup --token TOKEN`.",
        err=True,
    )


@token.command("list")
@settings_options("data_dir")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_list(data_dir: str | None, as_json: bool) -> None:
    """Every token's name, role, user, team, creation, expiry and last use (never the token itself)."""
    from .access.store import AccessStore

    records: list[TokenRecord] = _read_access(Config.from_options(data_dir=data_dir), AccessStore.tokens, [])
    if as_json:
        click.echo(json.dumps([record.as_dict() for record in records], indent=2))
        return
    if not records:
        click.echo("No tokens: ingest is open to anyone who can reach the server's OTLP ports.")
        return
    rows = [("NAME", "ROLE", "USER", "TEAM", "CREATED", "EXPIRES", "LAST USED")]
    for r in records:
        rows.append(
            (
                r.name,
                r.role,
                r.user or "-",
                r.team or "-",
                _when(r.created_ns),
                _when(r.expires_ns, "never"),
                _when(r.last_used_ns, "-"),
            )
        )
    _echo_table(rows)


def _when(ns: int | None, none: str = "-") -> str:
    from datetime import UTC, datetime

    if ns is None:
        return none
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M UTC")


@token.command("revoke")
@click.argument("name")
@settings_options("data_dir")
def token_revoke(name: str, data_dir: str | None) -> None:
    """Delete a token; a running server refuses it within seconds."""
    config = Config.from_options(data_dir=data_dir)
    _change_access(config, lambda access: access.revoke(name), f"no token named {name!r}")
    click.echo(f"Token {name!r} revoked.")


@main.group()
def user() -> None:
    """People: who signs in to the dashboard, and the names those who send data are shown by. A running
    server sees changes within seconds."""


def _password(password_stdin: bool) -> str:
    import sys

    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True))


@user.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "admin", "member"]),
    required=True,
    help="viewer: every team's data; admin: everything; member: only the data of their own user.email.",
)
@click.option(
    "--email",
    metavar="EMAIL",
    help="The user.email whose data is theirs [default: NAME, when it is an email].",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--no-password", is_flag=True, help="No password: they sign in only through the sign-on proxy.")
@settings_options("data_dir")
def user_add(
    name: str,
    role: str,
    email: str | None,
    password_stdin: bool,
    no_password: bool,
    data_dir: str | None,
) -> None:
    """Add a person who signs in with a password (asked twice), or through the sign-on proxy only."""
    from .access.people import PersonError, WebRole
    from .access.store import AccessStore

    if password_stdin and no_password:
        raise click.UsageError("--password-stdin and --no-password exclude each other")
    config = Config.from_options(data_dir=data_dir)
    try:
        password = None if no_password else _password(password_stdin)
        access = AccessStore(config.access_path)
        with contextlib.closing(access):
            person = access.add_person(name, WebRole(role), email=email, password=password)
    except PersonError as exc:
        raise click.ClickException(str(exc)) from None
    sees = f"the data of {person.email} only" if person.role is WebRole.MEMBER else "every team's data"
    how = "with a password" if person.has_password else "through the sign-on proxy only"
    click.echo(f"{person.name!r} ({person.role}) added: signs in {how}, sees {sees}.")


@user.command("list")
@settings_options("data_dir")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def user_list(data_dir: str | None, as_json: bool) -> None:
    """Every person's name, role, email, way of signing in and creation (never a password)."""
    from .access.store import AccessStore

    people: list[Person] = _read_access(Config.from_options(data_dir=data_dir), AccessStore.people, [])
    if as_json:
        click.echo(json.dumps([person.as_dict() for person in people], indent=2))
        return
    if not people:
        click.echo("No people: `ccmetrics user add NAME --role viewer` adds one.")
        return
    rows = [("NAME", "ROLE", "EMAIL", "SIGNS IN", "CREATED")]
    for p in people:
        rows.append(
            (p.name, p.role, p.email or "-", "password" if p.has_password else "proxy", _when(p.created_ns))
        )
    _echo_table(rows)


@user.command("remove")
@click.argument("name")
@settings_options("data_dir")
def user_remove(name: str, data_dir: str | None) -> None:
    """Remove a person; their sessions end, within seconds on a running server."""
    config = Config.from_options(data_dir=data_dir)
    _change_access(config, lambda access: access.remove_person(name), f"no person named {name!r}")
    click.echo(f"{name!r} removed; their sessions have ended.")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@settings_options("data_dir")
def user_passwd(name: str, password_stdin: bool, data_dir: str | None) -> None:
    """Set a person's password; their sessions end, within seconds on a running server."""
    from .access.people import PersonError

    def change(access: AccessStore) -> None:
        if access.person(name) is None:
            raise PersonError(f"no person named {name!r}: `ccmetrics user list` shows their names")
        access.set_password(name, _password(password_stdin))

    _change_access(Config.from_options(data_dir=data_dir), change, f"no person named {name!r}")
    click.echo(f"Password of {name!r} changed; their sessions have ended.")


def _aliases(config: Config) -> dict[str, str]:
    """The aliases users were given in this data directory (none when there is no access file)."""
    from .access.store import AccessStore

    return _read_access(config, AccessStore.aliases, {})


@user.command("alias")
@click.argument("user_id")
@click.argument("name", required=False)
@click.option("--remove", is_flag=True, help="Take the user's alias away.")
@settings_options("data_dir")
def user_alias(user_id: str, name: str | None, remove: bool, data_dir: str | None) -> None:
    """Show USER_ID (a user.id) as NAME where its data names no email or user.name; a running server shows
    it within seconds."""
    from .access.store import AccessStore, AliasError

    if remove == (name is not None):
        raise click.UsageError("give either a NAME or --remove")
    config = Config.from_options(data_dir=data_dir)
    try:
        access = AccessStore(config.access_path, create=not remove)
    except FileNotFoundError:
        raise click.ClickException(f"{user_id!r} has no alias: none exists in {config.data_dir}") from None
    with contextlib.closing(access):
        try:
            if name is None:
                access.remove_alias(user_id)
            else:
                access.set_alias(user_id, name)
        except AliasError as exc:
            raise click.ClickException(str(exc)) from None
    if name is None:
        click.echo(f"Alias of {user_id} removed.")
    else:
        click.echo(
            f"{user_id} is now shown as {name!r}, unless its data names an email or a user.name "
            "(those come first)."
        )


@user.command("aliases")
@settings_options("data_dir")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def user_aliases(data_dir: str | None, as_json: bool) -> None:
    """Every alias: user.id and name."""
    aliases = _aliases(Config.from_options(data_dir=data_dir))
    if as_json:
        click.echo(json.dumps([{"user_id": u, "name": n} for u, n in aliases.items()], indent=2))
        return
    if not aliases:
        click.echo("No aliases: `ccmetrics user alias USER_ID NAME` sets one.")
        return
    _echo_table([("USER.ID", "NAME"), *aliases.items()])


def _user_name_note(named: dict[str, str | None] | None, refused: bool) -> str:
    """What setup says of the user.name it adds (or why it adds none)."""
    if named is not None:
        return (
            f"User name: user.name={named['user_name']} (from {named['from']}) goes into "
            "OTEL_RESOURCE_ATTRIBUTES; the dashboard shows it when Claude Code sends no email. "
            "--no-user-name leaves it out."
        )
    if refused:
        return "User name: none added (--no-user-name)."
    return (
        "User name: none added (git config user.email is not set); --user-name NAME gives one, shown on "
        "the dashboard when Claude Code sends no email."
    )


@main.command()
@click.option(
    "--scope",
    type=click.Choice(["user", "project", "shell", "managed"]),
    default="user",
    show_default=True,
    help="user: ~/.claude/settings.json (every shell and IDE); project: .claude/settings.json here; "
    "shell: your rc file; managed: print a managed settings file for admins to deploy.",
)
@click.option(
    "--shell", type=click.Choice(["bash", "zsh", "fish"]), help="With --scope shell [default: from $SHELL]."
)
@click.option(
    "--file", "path", type=click.Path(dir_okay=False), help="Edit this file instead of the scope's own."
)
@click.option("--protocol", default="grpc", show_default=True, help="grpc, http/protobuf or http/json.")
@click.option(
    "--endpoint", metavar="URL", help="The ccmetrics OTLP receiver [default: this machine's, by protocol]."
)
@click.option("--team", help="Adds team.id=TEAM to OTEL_RESOURCE_ATTRIBUTES.")
@click.option(
    "--user-name",
    metavar="NAME",
    help="Adds user.name=NAME to OTEL_RESOURCE_ATTRIBUTES: the name the dashboard shows when Claude Code "
    "sends no email [default: git config user.email].",
)
@click.option("--no-user-name", is_flag=True, help="Add no user.name.")
@click.option(
    "--attr", "attrs", multiple=True, metavar="KEY=VALUE", help="A resource attribute (repeatable)."
)
@click.option("--token", help="Sends OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer TOKEN.")
@click.option(
    "--backend",
    type=click.Choice(["ccmetrics", "stack"]),
    default="ccmetrics",
    show_default=True,
    help="stack: the Prometheus stack, which needs cumulative temporality.",
)
@click.option(
    "--metric-interval", type=int, default=10_000, show_default=True, help="Metrics export interval, ms."
)
@click.option(
    "--logs-interval", type=int, default=5_000, show_default=True, help="Events export interval, ms."
)
@click.option("--project-dir", type=click.Path(file_okay=False), help="With --scope project [default: here].")
@click.option(
    "--push",
    "push_server",
    metavar="URL",
    help="Instead: add a SessionEnd hook that runs `ccmetrics push --server URL` (with --token) as each "
    "session ends, to ~/.claude/settings.json (or --file); with --undo, take it out.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask before writing.")
@click.option("--dry-run", is_flag=True, help="Show what would change and stop.")
@click.option("--undo", is_flag=True, help="Take out exactly what setup added (restoring replaced values).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def setup(
    scope: str,
    shell: str | None,
    path: str | None,
    protocol: str,
    endpoint: str | None,
    team: str | None,
    user_name: str | None,
    no_user_name: bool,
    attrs: tuple[str, ...],
    token: str | None,
    backend: str,
    metric_interval: int,
    logs_interval: int,
    project_dir: str | None,
    push_server: str | None,
    yes: bool,
    dry_run: bool,
    undo: bool,
    as_json: bool,
) -> None:
    """Point Claude Code's telemetry at ccmetrics: idempotent, shows a diff, keeps a backup, undoable."""
    import os
    from pathlib import Path

    from . import setup as setup_mod

    if push_server is not None:
        _setup_push_hook(push_server, token, Path(path) if path else None, yes, dry_run, undo)
        return

    if no_user_name and user_name is not None:
        raise click.UsageError("--user-name and --no-user-name exclude each other")
    if scope == "managed" and user_name is not None:
        raise click.UsageError("--user-name names one person, and a managed settings file reaches everyone")
    name_from: str | None = None  # where the user.name added comes from
    if user_name is not None:
        name_from = "--user-name"
    elif not (no_user_name or undo or scope == "managed"):  # managed: one git email would name everyone
        user_name = setup_mod.git_user_email(Path(project_dir or os.getcwd()), os.environ)
        name_from = "git config user.email" if user_name else None
    try:
        env = setup_mod.telemetry_env(
            protocol=protocol,
            endpoint=endpoint,
            team=team,
            user_name=user_name,
            attrs=attrs,
            token=token,
            backend=backend,
            metric_interval_ms=metric_interval,
            logs_interval_ms=logs_interval,
        )
        tgt = setup_mod.target(
            scope,
            home=Path.home(),
            project_dir=Path(project_dir or os.getcwd()),
            environ=os.environ,
            shell=shell,
            path=Path(path).expanduser() if path else None,
        )
        if tgt.kind == "managed":
            setup_mod.check_team_endpoint(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
            if as_json:
                click.echo(json.dumps({"path": str(tgt.path), "document": {"env": env}}, indent=2))
            else:
                click.echo(f"# Deploy as {tgt.path} (it overrides every user's own settings):", err=True)
                click.echo(setup_mod.managed_document(env), nl=False)
            return
        plan = setup_mod.plan_undo(tgt.path) if undo else setup_mod.plan_for(tgt, env)
    except setup_mod.SetupError as exc:
        raise click.ClickException(str(exc)) from None
    named = None if undo or name_from is None else {"user_name": user_name, "from": name_from}
    if as_json:
        click.echo(
            json.dumps(
                {
                    **plan.as_dict(),
                    "scope": scope,
                    "undo": undo,
                    "dry_run": dry_run,
                    "warning": tgt.warning,
                    "user_name": named,
                },
                indent=2,
            )
        )
    else:
        if tgt.warning and not undo:
            click.secho(f"Note: {tgt.warning}.", fg="yellow", err=True)
        if not undo:
            click.echo(_user_name_note(named, no_user_name), err=True)
        if not plan.changed:
            click.echo(
                f"{plan.path}: nothing to {'undo' if undo else 'change'}; it is already as it should be."
            )
        else:
            click.echo(
                f"{'Undo in' if undo else 'Changes to'} {plan.path}"
                + (f" ({plan.note})" if plan.note else "")
            )
            for line in plan.diff().splitlines():
                color = "green" if line.startswith("+") else "red" if line.startswith("-") else None
                click.secho(line, fg=color)
    if not plan.changed and not (undo and setup_mod.read_manifest(plan.path)):
        return
    if dry_run:
        if not as_json:
            click.echo("Dry run: nothing was written.")
        return
    if not yes and not click.confirm("Write this?", default=True, err=True):
        raise click.ClickException("nothing was written")
    if undo:
        setup_mod.apply_undo(plan)
        if not as_json:
            click.echo(f"Done: ccmetrics' telemetry settings are gone from {plan.path}.")
        return
    backup = setup_mod.apply(plan)
    if not as_json:
        click.echo(f"Written. Backup: {backup}" if backup else f"Written: {plan.path} (new file).")
        click.echo(
            "New Claude Code sessions now send telemetry; check that it arrives with `ccmetrics doctor`."
        )


@main.command()
@click.option(
    "--server",
    default="http://127.0.0.1:3000",
    show_default=True,
    envvar="CCMETRICS_SERVER",
    show_envvar=True,
    help="The ccmetrics API, asked whether the test export was stored.",
)
@click.option(
    "--backend",
    type=click.Choice(["ccmetrics", "stack"]),
    default="ccmetrics",
    show_default=True,
    help="What receives the data (the Prometheus stack needs cumulative temporality).",
)
@click.option(
    "--project-dir", type=click.Path(file_okay=False), help="The project Claude Code runs in [default: here]."
)
@click.option(
    "--managed-settings", type=click.Path(dir_okay=False), hidden=True, envvar="CCMETRICS_MANAGED_SETTINGS"
)
@click.option("--no-probe", is_flag=True, help="Do not send a test export.")
@click.option(
    "--wait", type=float, default=10.0, show_default=True, help="Seconds to wait for the test export to land."
)
@click.option(
    "--read-token",
    envvar="CCMETRICS_READ_TOKEN",
    show_envvar=True,
    help="A viewer or admin token, to read the status of a server that checks readers.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor(
    server: str,
    backend: str,
    project_dir: str | None,
    managed_settings: str | None,
    no_probe: bool,
    wait: float,
    read_token: str | None,
    as_json: bool,
) -> None:
    """Check the telemetry settings, send a test export, and show what the server has seen.
    Exit 0: data flows."""
    import os
    from pathlib import Path

    from . import doctor as doctor_mod

    result = doctor_mod.run(
        server=server,
        backend=backend,
        project_dir=Path(project_dir) if project_dir else None,
        managed_path=Path(managed_settings) if managed_settings else None,
        environ=os.environ,
        probe=not no_probe,
        wait_s=wait,
        read_token=read_token,
    )
    if as_json:
        click.echo(jsontext.dumps(result.as_dict(), indent=2))
    else:
        doctor_mod.render(result)
    raise SystemExit(0 if result.ok else 1)


@main.group()
def stack() -> None:
    """The distributed design: OpenTelemetry Collector, Prometheus, Loki and Grafana in Docker Compose."""


@stack.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--lite", is_flag=True, help="Prometheus scrapes `ccmetrics serve`'s /metrics: no Collector, no Loki."
)
@click.option(
    "--ccmetrics-target",
    default="host.docker.internal:3000",
    show_default=True,
    help="With --lite: host:port of ccmetrics serve, as the Prometheus container sees it.",
)
@click.option("--retention", default="30d", show_default=True, help="How long Prometheus keeps metrics.")
@click.option("--loki-retention", default="30d", show_default=True, help="How long Loki keeps events.")
@click.option(
    "--remote-write", "remote_write", metavar="URL", help="Also send everything to this remote_write URL."
)
@click.option("--scrape-interval", default="15s", show_default=True)
@click.option(
    "--metric-expiration",
    default="168h",
    show_default=True,
    help="How long the Collector keeps exposing a counter that stopped moving.",
)
@click.option(
    "--grafana-port", type=int, help="Grafana's port on the host [default: 3000; 3001 with --lite]."
)
@click.option(
    "--hourly-cost-alert", type=float, default=10.0, show_default=True, help="USD per hour, all users."
)
@click.option("--daily-budget", type=float, default=25.0, show_default=True, help="USD per user and day.")
@click.option("--no-telemetry-minutes", type=int, default=60, show_default=True)
@click.option(
    "--alerts",
    "alerts_file",
    type=click.Path(dir_okay=False),
    help="A rules file (as `serve --alerts`): rendered into alert_rules.yml and an Alertmanager config.",
)
@click.option("--force", is_flag=True, help="Overwrite the stack's files (.env and its password are kept).")
def stack_init(
    directory: str,
    lite: bool,
    ccmetrics_target: str,
    retention: str,
    loki_retention: str,
    remote_write: str | None,
    scrape_interval: str,
    metric_expiration: str,
    grafana_port: int | None,
    hourly_cost_alert: float,
    daily_budget: float,
    no_telemetry_minutes: int,
    alerts_file: str | None,
    force: bool,
) -> None:
    """Write a ready stack directory: Compose file, configs, rules, Grafana dashboard, Makefile, README."""
    from pathlib import Path

    from .stack import StackOptions, write

    rules = None
    if alerts_file is not None:
        from .alerts.prometheus import skipped
        from .alerts.rules import RulesError, load

        try:
            rules = load(Path(alerts_file))
        except RulesError as exc:
            raise click.UsageError(f"--alerts:\n{exc}") from None
        for name in skipped(rules):
            click.echo(f"rule {name!r} reads events, which the stack keeps in Loki: not rendered", err=True)
    opts = StackOptions(
        lite=lite,
        ccmetrics_target=ccmetrics_target,
        prometheus_retention=retention,
        loki_retention=loki_retention,
        remote_write_url=remote_write,
        scrape_interval=scrape_interval,
        metric_expiration=metric_expiration,
        grafana_port=grafana_port or (3001 if lite else 3000),
        hourly_cost_alert_usd=hourly_cost_alert,
        daily_budget_usd=daily_budget,
        no_telemetry_minutes=no_telemetry_minutes,
        alerts=rules,
    )
    try:
        written = write(Path(directory), opts, force=force)
    except (FileExistsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"\nNext: cd {directory} && make start && make health  (Grafana's password is in .env)")


@main.command()
@click.option(
    "--ccmetrics",
    "ccmetrics_url",
    metavar="URL",
    help="A ccmetrics serve [default, if nothing else is given: http://127.0.0.1:3000].",
)
@click.option("--collector", metavar="URL", help="The Collector's health_check extension (port 13133).")
@click.option("--prometheus", metavar="URL", help="Prometheus (asks /-/ready).")
@click.option("--loki", metavar="URL", help="Loki (asks /ready).")
@click.option("--grafana", metavar="URL", help="Grafana (asks /api/health).")
@click.option(
    "--stack", "whole_stack", is_flag=True, help="All four of a stack on this machine, default ports."
)
@click.option("--timeout", type=float, default=3.0, show_default=True, help="Seconds per check.")
@click.option("--json", "as_json", is_flag=True)
def health(
    ccmetrics_url: str | None,
    collector: str | None,
    prometheus: str | None,
    loki: str | None,
    grafana: str | None,
    whole_stack: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Check that each service is up; exit 1 when one is down."""
    from . import health as health_mod

    targets = dict(health_mod.STACK_DEFAULTS) if whole_stack else {}
    given = {
        "ccmetrics": ccmetrics_url,
        "collector": collector,
        "prometheus": prometheus,
        "loki": loki,
        "grafana": grafana,
    }
    targets.update({k: v for k, v in given.items() if v})
    if not targets:
        targets = {"ccmetrics": "http://127.0.0.1:3000"}
    checks = health_mod.run(targets, timeout)
    if as_json:
        click.echo(json.dumps(health_mod.as_dicts(checks), indent=2))
    else:
        health_mod.render(checks)
    raise SystemExit(0 if health_mod.all_ok(checks) else 1)


@main.command("import")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@settings_options("data_dir")
@click.option("--workers", type=int, help="Processes reading files [default: one per core].")
@click.option(
    "--watch", is_flag=True, help="Then follow the transcripts: import new lines as they are written."
)
@click.option("--json", "as_json", is_flag=True, help="Print what was imported as JSON.")
def import_transcripts(
    paths: tuple[Path, ...], data_dir: str | None, workers: int | None, watch: bool, as_json: bool
) -> None:
    """Import Claude Code's transcripts (default: ~/.claude/projects, ~/.config/claude/projects and
    CLAUDE_CONFIG_DIR's). Only what is new since the last import is read."""
    from .transcripts.cli import run_import, run_watch

    config = Config.from_options(data_dir=data_dir)
    if watch:
        run_watch(config.db_path, list(paths) or None, as_json)
    else:
        run_import(config.db_path, list(paths) or None, workers, as_json)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--server", required=True, metavar="URL", help="The team server's OTLP/HTTP address (port 4318)."
)
@click.option("--token", envvar="CCMETRICS_PUSH_TOKEN", help="An ingest token of the team server.")
@settings_options("data_dir")
@click.option("--json", "as_json", is_flag=True, help="Print what was imported and sent as JSON.")
def push(
    paths: tuple[Path, ...], server: str, token: str | None, data_dir: str | None, as_json: bool
) -> None:
    """Send this machine's transcript usage (numbers only, never prompt or response text) to a team server.
    Imports what is new first; sends only what changed since the last push, and sending again changes
    nothing there."""
    from .transcripts.push import push as push_usage

    config = Config.from_options(data_dir=data_dir)
    try:
        result = push_usage(config.db_path, server, token, list(paths) or None)
    except (OSError, RuntimeError, httpx_errors()) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(
            f"imported {result.imported.messages:,} new messages; sent {result.sent:,} totals "
            f"in {result.requests} requests to {server}"
        )


def httpx_errors() -> type[Exception]:
    import httpx

    return httpx.HTTPError


def _setup_push_hook(
    server: str, token: str | None, path: Path | None, yes: bool, dry_run: bool, undo: bool
) -> None:
    from .transcripts import hook

    settings = path or Path.home() / ".claude" / "settings.json"
    try:
        before, after, diff = hook.plan(settings, None if undo else hook.command(server, token))
    except ValueError as exc:
        raise click.ClickException(f"{settings}: {exc}") from None
    if not diff:
        click.echo(f"{settings}: nothing to change")
        return
    click.echo(diff)
    if dry_run:
        return
    if not yes and not click.confirm(f"write {settings}?", default=True):
        raise SystemExit(1)
    backup = hook.write(settings, before, after)
    click.echo(f"wrote {settings}" + (f" (the previous one is in {backup})" if backup else ""))


@main.group()
def alerts() -> None:
    """Budgets and alerts: a rules file that `serve --alerts FILE` evaluates and
    `stack init --alerts FILE` renders for Prometheus and Alertmanager."""


@alerts.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def alerts_check(file: str) -> None:
    """Check a rules file: every mistake is named with its line. Exit 0: it can be used."""
    from pathlib import Path

    from .alerts.notify import check_url
    from .alerts.rules import RulesError, load

    try:
        rules = load(Path(file))
    except RulesError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        raise SystemExit(1) from None
    bad = [(name, why) for name, url in rules.targets.items() if (why := check_url(url))]
    for name, why in bad:
        click.echo(f"{file}: targets.{name}: {why}", err=True)
    if bad:
        raise SystemExit(1)
    click.echo(
        f"{file}: {len(rules.rules)} rules, {len(rules.targets)} targets, "
        f"evaluated every {rules.evaluation_interval_s:g}s: OK"
    )


@alerts.command("test")
@click.argument("file", type=click.Path(dir_okay=False))
def alerts_test(file: str) -> None:
    """Send a test notification to each target of a rules file. Exit 0: every one was delivered."""
    from pathlib import Path

    from .alerts.notify import send
    from .alerts.rules import RulesError, load

    try:
        rules = load(Path(file))
    except RulesError as exc:
        raise click.ClickException(str(exc)) from None
    if not rules.targets:
        raise click.ClickException(f"{file} has no [targets]")
    failed = 0
    for name, url in rules.targets.items():
        outcome = send(url, "ccmetrics test notification", f"A test of target {name!r} from {file}.", "test")
        if outcome.ok:
            click.echo(f"{name}: delivered")
        else:
            failed += 1
            click.echo(f"{name}: FAILED: {outcome.error}")
    raise SystemExit(1 if failed else 0)


# --- keeping data: vacuum, backup, restore, export, forget ------------------------------------------------


@main.command()
@settings_options("data_dir")
def vacuum(data_dir: str | None) -> None:
    """Rewrite the database without its free pages, with the server stopped; from then on it gives back the
    space pruning frees by itself (a database made before retention existed does not)."""
    from .running import ServerRunning, no_server
    from .store.retention import vacuum as rewrite

    config = Config.from_options(data_dir=data_dir)
    if not config.db_path.exists():
        raise click.ClickException(f"no database at {config.db_path}")
    before = config.db_path.stat().st_size
    try:
        with no_server(config.data_dir):
            rewrite(config.db_path)
    except ServerRunning as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{config.db_path}: {before / 1e6:,.1f} MB -> {config.db_path.stat().st_size / 1e6:,.1f} MB")


@main.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@settings_options("data_dir")
def backup_command(file: Path, data_dir: str | None) -> None:
    """Write a consistent copy of the database (and of access.db, the tokens) to FILE, a tar file, while the
    server runs. Do not copy the live files instead: the copy could be torn, or miss the write-ahead log."""
    from .backup import BackupError, backup

    config = Config.from_options(data_dir=data_dir)
    try:
        copied = backup(config.data_dir, file)
    except (BackupError, OSError, sqlite3.Error) as exc:
        raise click.ClickException(str(exc)) from None
    held = ", ".join(f"{c.name} ({c.size / 1e6:,.1f} MB)" for c in copied)
    click.echo(f"wrote {file}: {held}")


@main.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@settings_options("data_dir")
@click.option(
    "--force",
    is_flag=True,
    help="Restore even while a server uses the data directory: it goes on with the data it had, and what it "
    "stores until it is restarted is lost. Restart it at once.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask before replacing the data there.")
def restore_command(file: Path, data_dir: str | None, force: bool, yes: bool) -> None:
    """Put the backup FILE (see `ccmetrics backup`) in place of the data directory's databases."""
    from .backup import BackupError, restore
    from .running import ServerRunning, no_server

    config = Config.from_options(data_dir=data_dir)
    if config.db_path.exists() and not yes:
        click.confirm(f"Replace the data in {config.data_dir} with {file}'s?", abort=True)
    try:
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(no_server(config.data_dir))
            except ServerRunning as exc:
                if not force:
                    raise click.ClickException(f"{exc} (or give --force)") from None
                click.echo(f"warning: {exc}; restoring anyway (--force): restart it now", err=True)
            restored = restore(file, config.data_dir)
    except (BackupError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored {', '.join(c.name for c in restored)} into {config.data_dir}")


@main.command("export")
@settings_options("data_dir")
@click.option("--since", metavar="TIME", help="Only data from TIME on: ISO 8601, or 7d, 24h, 30m ago.")
@click.option("--until", metavar="TIME", help="Only data before TIME.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="jsonl", show_default=True)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write here [default: stdout]."
)
def export_command(
    data_dir: str | None, since: str | None, until: str | None, fmt: str, output: Path | None
) -> None:
    """The raw points and events of a range, one record a row or line (prompt text only if the server kept
    it: --store-prompts). Works while the server runs."""
    from .export import write as write_records
    from .store import StoreOutdated, open_reader
    from .store.filters import Filters, QueryError

    config = Config.from_options(data_dir=data_dir)
    try:
        query = Filters.parse(since, until, ())
        conn = open_reader(config.db_path)
    except (QueryError, FileNotFoundError, StoreOutdated) as exc:
        raise click.ClickException(str(exc)) from None
    with contextlib.closing(conn):
        if output is None:
            points, events = write_records(conn, sys.stdout, fmt, query.since_ns, query.until_ns)
        else:
            with output.open("w", newline="", encoding="utf-8") as out:
                points, events = write_records(conn, out, fmt, query.since_ns, query.until_ns)
    click.echo(f"exported {points:,} points and {events:,} events", err=True)


@main.command("forget")
@click.option("--user", metavar="ID|EMAIL|NAME", help="A person, by any of user.id, user.email, user.name.")
@click.option("--session", metavar="ID", help="One session, by its session.id.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
@settings_options("data_dir")
def forget_command(user: str | None, session: str | None, yes: bool, data_dir: str | None) -> None:
    """Remove every row about a person (or a session) and take what they sent out of every sum, while the
    server runs; everyone else's totals stay as they were. Keeps an audit line in audit.log (who ran it,
    when, how much was removed; not whom)."""
    from .forget import forget
    from .store import StoreOutdated

    if (user is None) == (session is None):
        raise click.UsageError("give --user or --session")
    kind, value = ("user", user) if user is not None else ("session", session)
    assert value is not None
    config = Config.from_options(data_dir=data_dir)
    try:
        forget(config.data_dir, kind, value, yes)
    except (FileNotFoundError, StoreOutdated, sqlite3.Error) as exc:
        raise click.ClickException(str(exc)) from None
