"""`clinic-app users`: create, list, disable, enable accounts; set passwords and roles.

The command acts as the system administrator ("system" in the audit trail): whoever can run
it on this workstation can read and replace the data folder anyway, so a password prompt here
would protect nothing. Passwords never appear on the command line (where `ps` and the shell
history would keep them): they are asked for on the terminal, or read as one line from
standard input with ``--password-stdin``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import TYPE_CHECKING, Any

from clinic_app.cli._database import open_cli_database
from clinic_app.config.settings import Settings
from clinic_app.domain.errors import InputError
from clinic_app.domain.records import Role

if TYPE_CHECKING:
    from clinic_app.services.users import UserInfo
    from clinic_app.storage.engine import Database

ROLE_CHOICES = [role.value for role in Role]

_DESCRIPTION = (
    "Manage user accounts and their roles (clinician, reviewer, admin, data_scientist). "
    "These commands act as the system administrator, because whoever runs them on this "
    "workstation owns the data folder; every change is recorded in the audit trail as 'system'. "
    "Passwords are never command-line arguments: they are asked for on the terminal, or read "
    "as one line from standard input with --password-stdin. On an empty database, "
    "`users add NAME --role admin` creates the first administrator."
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = commands.add_parser(
        "users",
        help="manage user accounts and roles (acts as the administrator)",
        description=_DESCRIPTION,
    )
    actions = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)

    # allow_abbrev=False: `--password SECRET` must be refused, not taken for --password-stdin.
    add = actions.add_parser(
        "add", help="create an account (asks for its password)", allow_abbrev=False
    )
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=ROLE_CHOICES)
    add.add_argument("--display-name", metavar="NAME", help="the name shown (default: USERNAME)")
    _password_stdin_flag(add)
    add.set_defaults(handler=_cmd_add)

    listing = actions.add_parser("list", help="list the accounts, their roles and status")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.set_defaults(handler=_cmd_list)

    disable = actions.add_parser("disable", help="stop an account from signing in")
    disable.add_argument("username")
    disable.set_defaults(handler=_cmd_disable)

    enable = actions.add_parser("enable", help="let an account sign in again; lifts a lockout")
    enable.add_argument("username")
    enable.set_defaults(handler=_cmd_enable)

    passwd = actions.add_parser(
        "passwd", help="set an account's password (asks for it)", allow_abbrev=False
    )
    passwd.add_argument("username")
    _password_stdin_flag(passwd)
    passwd.set_defaults(handler=_cmd_passwd)

    role = actions.add_parser("role", help="give an account another role")
    role.add_argument("username")
    role.add_argument("role", choices=ROLE_CHOICES)
    role.set_defaults(handler=_cmd_role)


def _password_stdin_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password as one line from standard input (for scripts)",
    )


def read_new_password(from_stdin: bool) -> str:
    """One line of stdin with --password-stdin, else asked twice on the terminal."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InputError(
                "No password arrived on standard input.",
                hint="Pipe the password as one line, e.g. from a password manager.",
            )
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InputError(
            "There is no terminal to ask for the password on.",
            hint="Pipe it as one line with --password-stdin.",
        )
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat the new password: ") != first:
        raise InputError("The two passwords differ; nothing was changed.", hint="Try again.")
    return first


def _open(settings: Settings) -> Database:
    return open_cli_database(settings)


def _describe(user: UserInfo) -> str:
    return f"{user.username} ({user.role.value.replace('_', ' ')}, {user.status()})"


def _cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.context import Actor
    from clinic_app.services.users import (
        create_first_admin,
        create_user,
        has_users,
        validate_username,
    )

    validate_username(args.username)  # before asking for a password
    role = Role(args.role)
    password = read_new_password(args.password_stdin)
    database = _open(settings)
    try:
        if not has_users(database) and role is Role.ADMIN:
            user = create_first_admin(
                database, args.username, password, display_name=args.display_name
            )
            print(f"Created the first administrator: {_describe(user)}.")
            return 0
        first = not has_users(database)
        user = create_user(
            database,
            Actor.system(),
            args.username,
            password,
            role,
            display_name=args.display_name,
        )
        print(f"Created user {_describe(user)}.")
        if first:
            print(
                "There is no administrator account yet: create one with "
                "`clinic-app users add NAME --role admin`."
            )
        return 0
    finally:
        database.dispose()


def _as_json(user: UserInfo) -> dict[str, Any]:
    return {
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role.value,
        "status": user.status().split(" ")[0],  # active, disabled or locked
        "is_active": user.is_active,
        "failed_logins": user.failed_logins,
        "locked_until": user.locked_until.isoformat() if user.locked_until else None,
        "created_at": user.created_at.isoformat(),
        "password_changed_at": user.password_changed_at.isoformat(),
    }


def _cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.context import Actor
    from clinic_app.services.users import list_users

    database = _open(settings)
    try:
        users = list_users(database, Actor.system())
    finally:
        database.dispose()
    if args.json:
        print(json.dumps([_as_json(user) for user in users], indent=2))
        return 0
    if not users:
        print(
            "No user accounts yet: create the first with `clinic-app users add NAME --role admin`."
        )
        return 0
    rows = [("USERNAME", "ROLE", "STATUS", "DISPLAY NAME")]
    rows += [(u.username, u.role.value, u.status(), u.display_name) for u in users]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[3]]))
    return 0


def _cmd_disable(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.context import Actor
    from clinic_app.services.users import disable_user

    database = _open(settings)
    try:
        user = disable_user(database, Actor.system(), args.username)
    finally:
        database.dispose()
    print(f"{user.username} is disabled: the account can no longer sign in.")
    return 0


def _cmd_enable(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.context import Actor
    from clinic_app.services.users import enable_user

    database = _open(settings)
    try:
        user = enable_user(database, Actor.system(), args.username)
    finally:
        database.dispose()
    print(f"{user.username} is enabled and unlocked: the account can sign in.")
    return 0


def _cmd_passwd(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.context import Actor
    from clinic_app.services.users import change_password, get_user

    database = _open(settings)
    try:
        get_user(database, Actor.system(), args.username)  # an unknown name fails before asking
        password = read_new_password(args.password_stdin)
        user = change_password(database, Actor.system(), args.username, password)
    finally:
        database.dispose()
    print(f"The password of {user.username} is set.")
    return 0


def _cmd_role(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.context import Actor
    from clinic_app.services.users import change_role

    database = _open(settings)
    try:
        user = change_role(database, Actor.system(), args.username, Role(args.role))
    finally:
        database.dispose()
    print(f"{user.username} now has the role {user.role.value.replace('_', ' ')}.")
    return 0
