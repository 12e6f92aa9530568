"""`clinic-app db`: upgrade, check, back up and encrypt the case database.

Each action is recorded in the database's own audit trail as the system actor. An encrypted
database's key comes from CLINICFUSION_DB_PASSPHRASE, the OS keyring, or (on a terminal) a
passphrase prompt; it is never a command-line argument, where `ps` and shell history keep it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from clinic_app.cli._database import key_sources
from clinic_app.config.settings import Settings

if TYPE_CHECKING:
    pass

_DESCRIPTION = (
    "Upgrade, check, back up and encrypt the case database. `db check` exits 1 when something "
    "is wrong and says what to do. `db backup` copies a running SQLite database with SQLite's "
    "online backup API and verifies the copy; an encrypted database's backup stays encrypted "
    "with the same key. For PostgreSQL use pg_dump. Keys of encrypted databases come from "
    "CLINICFUSION_DB_PASSPHRASE, the OS keyring, or a prompt on the terminal."
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser(
        "db", help="upgrade, check and back up the case database", description=_DESCRIPTION
    )
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)

    upgrade = actions.add_parser("upgrade", help="migrate the database to the newest schema")
    upgrade.set_defaults(handler=_cmd_upgrade)

    check = actions.add_parser(
        "check",
        help="check schema revision, schema drift and (SQLite) file integrity; exit 1 if wrong",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(handler=_cmd_check)

    backup = actions.add_parser(
        "backup", help="verified online backup of the SQLite database (PostgreSQL: pg_dump)"
    )
    backup.add_argument(
        "--output",
        metavar="FILE",
        type=Path,
        help="the backup file to write (default: "
        "<data dir>/backups/clinicfusion-YYYYmmddTHHMMSSZ.sqlite3); never overwritten",
    )
    backup.set_defaults(handler=_cmd_backup)

    encrypt = actions.add_parser(
        "encrypt",
        help="write an encrypted (SQLCipher) copy of a plain SQLite database",
        description="Write an encrypted copy of the plain SQLite case database. Its key is "
        "CLINICFUSION_DB_PASSPHRASE, or the passphrase typed at the prompt, or else a new "
        "random key kept in the OS keyring. The database itself is not changed; point "
        "database_url at the copy and set encryption = 'sqlcipher' to use it.",
    )
    encrypt.add_argument("--output", metavar="FILE", type=Path, required=True)
    encrypt.set_defaults(handler=_cmd_encrypt)


def _cmd_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.database import upgrade_database

    result = upgrade_database(settings, key_sources=key_sources())
    where = settings.database_path or "on the server"
    if result.changed:
        print(
            f"Upgraded the case database {where} from schema revision "
            f"{result.from_revision or 'none (empty)'} to {result.to_revision}."
        )
    else:
        print(
            f"The case database {where} is already at the newest schema revision "
            f"{result.to_revision}."
        )
    return 0


def _cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.database import check_database

    report = check_database(settings, key_sources=key_sources())
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "database": report.database,
                    "backend": report.backend,
                    "schema_revision": report.revision,
                    "head_revision": report.head,
                    "problems": report.problems,
                },
                indent=2,
            )
        )
    else:
        print(f"Database: {report.database} ({report.backend})")
        revision = report.revision or ("none" if report.revision_read else "not read")
        print(f"Schema revision: {revision} (newest {report.head})")
        if report.ok:
            checks = (
                "integrity, foreign keys, WAL journal, schema revision and schema"
                if report.backend == "sqlite"
                else "schema revision and schema"
            )
            print(f"OK: {checks} checked, no problems found.")
        else:
            print(f"FAILED: {len(report.problems)} problem(s):")
            for problem in report.problems:
                print(f"  - {problem}")
    return 0 if report.ok else 1


def _cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.database import backup_database

    result = backup_database(settings, args.output, key_sources=key_sources())
    print(
        f"Backed up the case database to {result.path}: {result.total_rows} rows in "
        f"{len(result.table_rows)} tables, {result.size_bytes} bytes"
        f"{', encrypted with the same key' if result.encrypted else ''}; "
        f"verified by SQLite's integrity check. sha256 {result.sha256}."
    )
    return 0


def _cmd_encrypt(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.database import KEYRING_SERVICE, encrypt_database, keyring_entry_name

    result = encrypt_database(settings, args.output, key_sources=key_sources())
    if result.key_source == "keyring":
        key_note = (
            f"its key is a new random key in the OS keyring (service '{KEYRING_SERVICE}', "
            f"name '{keyring_entry_name(result.path)}')"
        )
    else:
        key_note = "its key is the passphrase you gave"
    print(f"Wrote an encrypted copy of the case database to {result.path}; {key_note}.")
    print(
        f'To use it, set database_url = "sqlite:///{result.path}" and encryption = '
        '"sqlcipher" in settings.toml; the plain database was not changed.'
    )
    return 0
