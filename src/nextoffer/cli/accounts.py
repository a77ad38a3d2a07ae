"""`nextoffer keys` and `users`: API keys for machines and accounts for people."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from nextoffer.cli.audit import audit_change
from nextoffer.cli.common import (
    console,
    err_console,
    handles_errors,
    load_settings,
    open_platform,
)
from nextoffer.domain.audit import Action
from nextoffer.domain.errors import ConfigError
from nextoffer.domain.roles import Role, parse_role
from nextoffer.store import Engine
from nextoffer.store.engine import wait_for_database

if TYPE_CHECKING:
    from nextoffer.platform import Platform

keys_app = typer.Typer(help="API keys for machines: create, list, revoke.")
users_app = typer.Typer(help="User accounts for people: create, list, disable.")

ROLE_HELP = "viewer, writer (+ events), operator (+ experiments, jobs) or admin (+ keys, users)"
# What `keys list` and `users list` show, and say when there is nothing to show.
KEY_COLUMNS = ("key_id", "name", "role", "created (UTC)", "revoked (UTC)")
NO_KEYS = "keys: none yet; create one with `nextoffer keys create --role ...`"
USER_COLUMNS = ("username", "role", "status", "created (UTC)")
NO_USERS = "users: none yet; create one with `nextoffer users create NAME --role ...`"


def _role_option(text: str) -> Role:
    try:
        return parse_role(text)
    except ValueError as exc:
        raise ConfigError(f"--role: {exc}") from None


def _accounts_platform() -> Platform:
    settings = load_settings()
    platform = open_platform(settings)
    wait_for_database(platform.engine, settings.db_wait_timeout_s)
    return platform


def _accounts_engine() -> Engine:
    return _accounts_platform().engine


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def _print_rows(columns: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> None:
    """A borderless table of `rows`, or the hint `empty` when there are none."""
    if not rows:
        console.print(empty)
        return
    table = Table(*columns, box=None)
    for row in rows:
        table.add_row(*row)
    console.print(table)


@keys_app.command("create")
@handles_errors
def keys_create(
    role: Annotated[str, typer.Option(help=ROLE_HELP)],
    name: Annotated[str, typer.Option(help="what the key is for (default: '<role> key')")] = "",
) -> None:
    """Create an API key and print it once: only its hash is kept, so copy it now.

    The key alone goes to standard output (for `KEY=$(nextoffer keys create ...)`), the
    rest to standard error. Send it in the X-API-Key header.
    """
    from nextoffer.serving.api_keys import create_api_key

    platform = _accounts_platform()
    record, plaintext = create_api_key(platform.engine, name, _role_option(role))
    detail = {"name": record.name, "role": record.role.value}
    audit_change(platform, Action.KEY_CREATE, record.key_id, detail=detail)
    err_console.print(
        f"keys: created {record.key_id} ({record.name!r}, role {record.role})", highlight=False
    )
    # Plain echo, not rich: the key must come out exactly, unwrapped and unstyled.
    typer.echo(plaintext)
    err_console.print(
        "[yellow]warning:[/yellow] this key will not be shown again; store it now",
        highlight=False,
    )


@keys_app.command("list")
@handles_errors
def keys_list() -> None:
    """Every API key, revoked ones included (secrets are never stored, so never shown)."""
    from nextoffer.serving.api_keys import list_api_keys

    rows = [
        (key.key_id, key.name, key.role.value, _when(key.created_at), _when(key.revoked_at))
        for key in list_api_keys(_accounts_engine())
    ]
    _print_rows(KEY_COLUMNS, rows, NO_KEYS)


@keys_app.command("revoke")
@handles_errors
def keys_revoke(key_id: Annotated[str, typer.Argument(help="id shown by `keys list`")]) -> None:
    """Revoke an API key; running API processes stop accepting it within 30 s."""
    from nextoffer.serving.api_keys import revoke_api_key

    platform = _accounts_platform()
    record = revoke_api_key(platform.engine, key_id)
    audit_change(platform, Action.KEY_REVOKE, record.key_id, detail={"name": record.name})
    console.print(
        f"keys: revoked {record.key_id} ({record.name!r}) at {_when(record.revoked_at)} UTC",
        highlight=False,
    )


@users_app.command("create")
@handles_errors
def users_create(
    username: Annotated[str, typer.Argument(help="3-64 characters: A-Z a-z 0-9 . _ @ -")],
    role: Annotated[str, typer.Option(help=ROLE_HELP)],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Create a user account; the password (12+ characters) is asked for, never an argument.

    Without --password-stdin it is prompted for twice with the input hidden.
    """
    import sys

    from nextoffer.serving.users import check_username, create_user

    # Everything that can be checked is, before anyone types a password.
    granted = _role_option(role)
    check_username(username)
    platform = _accounts_platform()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    record = create_user(platform.engine, username, password, granted)
    audit_change(platform, Action.USER_CREATE, record.username, detail={"role": record.role.value})
    console.print(f"users: created {record.username} (role {record.role})", highlight=False)


@users_app.command("list")
@handles_errors
def users_list() -> None:
    """Every user account, disabled ones included."""
    from nextoffer.serving.users import list_users

    rows = [
        (
            user.username,
            user.role.value,
            "disabled" if user.disabled else "active",
            _when(user.created_at),
        )
        for user in list_users(_accounts_engine())
    ]
    _print_rows(USER_COLUMNS, rows, NO_USERS)


@users_app.command("disable")
@handles_errors
def users_disable(username: Annotated[str, typer.Argument(help="account to disable")]) -> None:
    """Disable a user: logins fail at once, issued tokens stop working within 30 s."""
    from nextoffer.serving.users import disable_user

    platform = _accounts_platform()
    disabled = disable_user(platform.engine, username).username
    audit_change(platform, Action.USER_DISABLE, disabled)
    console.print(f"users: disabled {disabled}", highlight=False)
