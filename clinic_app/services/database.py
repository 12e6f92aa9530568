"""The case database as a whole: opening it (key, migration), upgrade, check, backup, encrypt.

Encryption at rest (``encryption = "sqlcipher"``) needs a key, looked for in this order:
the passphrase in ``CLINICFUSION_DB_PASSPHRASE``; the OS keyring (service ``ClinicFusion``,
name ``database:<absolute path of the file>``), which holds either a raw 256-bit key the app
generated or a passphrase; a passphrase prompt (CLI, GUI). A new encrypted database with none
of these gets a random key stored in the keyring; where no keyring works (a headless server
has only keyring's ``fail`` back end) the passphrase must be given. Keys never go into the
settings, the data folder, the logs or the audit trail.

Every administrative action (upgrade, check, backup, encrypt) is an audit event in the database
itself, recorded as the system actor.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import text

from clinic_app.config.settings import Settings
from clinic_app.domain.errors import ConfigError, NotAvailable, StorageError
from clinic_app.domain.records import AuditAction, AuditOutcome
from clinic_app.services.audit import AuditKeyStore, bind_audit_keys
from clinic_app.services.context import Actor, record_audit
from clinic_app.storage.backup import BackupResult, backup_sqlite, sqlite_problems
from clinic_app.storage.encryption import (
    encrypt_copy,
    is_plain_sqlite,
    is_raw_key,
    new_raw_key,
    raw_key_pragma,
)
from clinic_app.storage.engine import Database, create_database_engine
from clinic_app.storage.migrate import (
    MIGRATIONS_DIR,
    current_revision,
    head_revision,
    schema_differences,
    upgrade,
)

log = logging.getLogger(__name__)

ENV_DB_PASSPHRASE = "CLINICFUSION_DB_PASSPHRASE"
KEYRING_SERVICE = "ClinicFusion"
BACKUPS_FOLDER = "backups"
PG_DUMP_SENTENCE = (
    "The case database is on a PostgreSQL server, and pg_dump is the tool to back it up "
    "(for example: pg_dump --format=custom --file=clinicfusion.dump DATABASE)."
)


class KeyStore(Protocol):
    """The part of a keyring back end the app uses (``keyring.get_keyring()`` is one)."""

    def get_password(self, service: str, username: str) -> str | None: ...

    def set_password(self, service: str, username: str, password: str) -> None: ...


#: Asks a person for the passphrase; gets the prompt text, returns what they typed.
PassphrasePrompt = Callable[[str], str]


@dataclass(frozen=True)
class KeySources:
    """Where to look for the database key. Defaults: the process environment, the OS keyring,
    no prompt. Tests and the GUI pass their own."""

    environ: Mapping[str, str] | None = None
    keystore: KeyStore | None = None
    prompt: PassphrasePrompt | None = None

    def passphrase_from_environment(self) -> str | None:
        env = os.environ if self.environ is None else self.environ
        return env.get(ENV_DB_PASSPHRASE) or None

    def store(self) -> KeyStore:
        if self.keystore is not None:
            return self.keystore
        import keyring

        return keyring.get_keyring()


def keyring_entry_name(database_path: Path) -> str:
    return f"database:{database_path.expanduser().resolve()}"


def _keyring_errors() -> tuple[type[Exception], ...]:
    from keyring.errors import KeyringError

    return (KeyringError,)


def _read_keyring(sources: KeySources, database_path: Path) -> str | None:
    try:
        return sources.store().get_password(KEYRING_SERVICE, keyring_entry_name(database_path))
    except _keyring_errors() as exc:
        log.info("No usable OS keyring for the database key (%s)", type(exc).__name__)
        return None


def _store_new_key(sources: KeySources, database_path: Path) -> str | None:
    """A new random raw key, saved in the keyring; None when no keyring can hold it."""
    hex_key = new_raw_key()
    try:
        sources.store().set_password(KEYRING_SERVICE, keyring_entry_name(database_path), hex_key)
    except _keyring_errors() as exc:
        log.info("The OS keyring cannot store a database key (%s)", type(exc).__name__)
        return None
    return raw_key_pragma(hex_key)


def _no_key_error(database_path: Path, purpose: str) -> ConfigError:
    return ConfigError(
        f"The {purpose} {database_path} needs an encryption key and none was found "
        "(no passphrase given and no key in a working OS keyring).",
        hint=f"Set {ENV_DB_PASSPHRASE} to its passphrase, or store its key in the OS keyring "
        f"(service '{KEYRING_SERVICE}', name '{keyring_entry_name(database_path)}').",
    )


def _key_for(
    database_path: Path, sources: KeySources, *, create: bool, purpose: str
) -> tuple[str, str]:
    """The ``PRAGMA key`` text for ``database_path`` and where it came from."""
    passphrase = sources.passphrase_from_environment()
    if passphrase:
        return passphrase, "passphrase"
    stored = _read_keyring(sources, database_path)
    if stored:
        return (raw_key_pragma(stored) if is_raw_key(stored) else stored), "keyring"
    if sources.prompt is not None:
        typed = sources.prompt(f"Passphrase for the {purpose} {database_path}: ")
        if typed:
            return typed, "passphrase"
    if create:
        generated = _store_new_key(sources, database_path)
        if generated is not None:
            return generated, "keyring"
    raise _no_key_error(database_path, purpose)


def resolve_database_key(settings: Settings, sources: KeySources | None = None) -> str | None:
    """The key for the configured database, or None when it is not encrypted.

    A database file that does not exist yet gets a new random key kept in the OS keyring when
    no passphrase is given. Raises ConfigError when a key is needed and none is found.
    """
    if settings.encryption != "sqlcipher":
        return None
    path = settings.database_path
    if path is None:
        raise ConfigError(
            "Database encryption 'sqlcipher' applies to SQLite files only.",
            hint="Set encryption to 'none' for this database.",
        )
    key, _source = _key_for(
        path, sources or KeySources(), create=not path.exists(), purpose="encrypted case database"
    )
    return key


def _open(
    settings: Settings, *, migrate: bool, sqlcipher_key: str | None, sources: KeySources | None
) -> tuple[Database, str | None]:
    if sqlcipher_key is None:
        sqlcipher_key = resolve_database_key(settings, sources)
    if settings.database_path is not None:
        settings.database_path.parent.mkdir(parents=True, exist_ok=True)
    database = Database(create_database_engine(settings.database_url, sqlcipher_key=sqlcipher_key))
    try:
        if database.backend == "sqlite":
            # The first read: a wrong key or a file that is not a database fails here, as one
            # StorageError, before anything is written.
            with database.read() as session:
                session.execute(text("SELECT count(*) FROM sqlite_master")).scalar_one()
        if migrate:
            upgrade(database)
    except BaseException:
        database.dispose()
        raise
    return database, sqlcipher_key


def open_database(
    settings: Settings,
    *,
    migrate: bool = True,
    sqlcipher_key: str | None = None,
    key_sources: KeySources | None = None,
) -> Database:
    """Connect to the configured database and, by default, upgrade it to the newest schema.

    For a SQLite file the folder is created first; an encrypted one is opened with the key from
    ``sqlcipher_key`` or else from ``key_sources`` (see the module docstring). Raises
    StorageError with the reason when the database cannot be opened (damaged, wrong key, newer
    than this app) and ConfigError when an encrypted database has no key.
    """
    database, _key = _open(
        settings, migrate=migrate, sqlcipher_key=sqlcipher_key, sources=key_sources
    )
    # Audit events written through this database are signed with the key these settings name.
    bind_audit_keys(database, AuditKeyStore.from_settings(settings))
    return database


def _shown(settings: Settings) -> str:
    if settings.database_path is not None:
        return str(settings.database_path)
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)


def _require_existing_file(settings: Settings, action: str) -> None:
    path = settings.database_path
    if path is not None and not path.is_file():
        raise StorageError(
            f"There is no case database at {path}, so there is nothing to {action}.",
            hint="Check --data-dir and the database_url setting.",
        )


# -- upgrade ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpgradeResult:
    from_revision: str | None
    to_revision: str

    @property
    def changed(self) -> bool:
        return self.from_revision != self.to_revision


def upgrade_database(settings: Settings, *, key_sources: KeySources | None = None) -> UpgradeResult:
    """Migrate the database to the newest schema and audit it as ``database.upgrade``."""
    database, _key = _open(settings, migrate=False, sqlcipher_key=None, sources=key_sources)
    try:
        before = current_revision(database)
        upgrade(database)
        after = current_revision(database) or head_revision()
        with database.write() as session:
            record_audit(
                session,
                Actor.system(),
                "database.upgrade",
                AuditAction.UPDATE,
                details={"from_revision": before, "to_revision": after},
            )
    finally:
        database.dispose()
    return UpgradeResult(before, after)


# -- check ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseCheck:
    """The outcome of `clinic-app db check`: each problem is a sentence with its remedy."""

    database: str
    backend: str
    revision: str | None
    head: str
    problems: list[str] = field(default_factory=list)
    revision_read: bool = True  # False when the database could not be opened

    @property
    def ok(self) -> bool:
        return not self.problems


def known_revisions() -> set[str]:
    """Every schema revision this version of ClinicFusion can migrate from."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


def _revision_problem(revision: str | None, head: str) -> str | None:
    if revision == head:
        return None
    if revision is None:
        return "The database has no ClinicFusion schema yet; run `clinic-app db upgrade`."
    if revision in known_revisions():
        return (
            f"The schema revision is {revision}, older than this version's {head}; "
            "run `clinic-app db upgrade`."
        )
    return (
        f"The schema revision is {revision}, which is newer than this version of ClinicFusion "
        f"knows (newest {head}); use the newer version that wrote it."
    )


def _describe_differences(differences: list[Any]) -> str:
    shown = "; ".join(repr(item)[:120] for item in differences[:3])
    more = f" and {len(differences) - 3} more" if len(differences) > 3 else ""
    return (
        f"The live schema differs from what this version expects in {len(differences)} "
        f"place(s): {shown}{more}. Restore a backup or ask the ClinicFusion team."
    )


def check_database(settings: Settings, *, key_sources: KeySources | None = None) -> DatabaseCheck:
    """Check schema revision, schema drift and (SQLite) file integrity; never raises for a
    problem found, reports it. Audited as ``database.check`` when the file is sound enough to
    write to (writing into a damaged SQLite file can spread the damage)."""
    head = head_revision()
    backend = "sqlite" if settings.database_path is not None else "postgresql"
    path = settings.database_path
    if path is not None and not path.is_file():
        return DatabaseCheck(
            str(path),
            backend,
            None,
            head,
            [
                f"There is no case database at {path}; the app creates it at its first start "
                "(or run `clinic-app db upgrade`)."
            ],
        )
    try:
        database, _key = _open(settings, migrate=False, sqlcipher_key=None, sources=key_sources)
    except StorageError as exc:
        return DatabaseCheck(_shown(settings), backend, None, head, [str(exc)], revision_read=False)
    problems: list[str] = []
    revision: str | None = None
    revision_read = True
    try:
        backend = database.backend
        if backend == "sqlite":
            raw = database.engine.raw_connection()
            try:
                problems.extend(sqlite_problems(raw.driver_connection))
            finally:
                raw.close()
        file_sound = not problems
        try:
            revision = current_revision(database)
        except Exception as exc:  # a damaged file fails in any driver call
            revision_read = False
            problems.append(f"The schema revision cannot be read ({_reason(exc)}).")
        else:
            revision_problem = _revision_problem(revision, head)
            if revision_problem is not None:
                problems.append(revision_problem)
            else:
                try:
                    differences = schema_differences(database)
                except Exception as exc:
                    problems.append(f"The live schema cannot be compared ({_reason(exc)}).")
                else:
                    if differences:
                        problems.append(_describe_differences(differences))
        if file_sound and revision is not None and revision in known_revisions():
            try:
                with database.write() as session:
                    record_audit(
                        session,
                        Actor.system(),
                        "database.check",
                        AuditAction.EXECUTE,
                        outcome=AuditOutcome.SUCCESS
                        if not problems
                        else AuditOutcome.MINOR_FAILURE,
                        details={"problems": len(problems)},
                    )
            except StorageError as exc:
                problems.append(f"The check could not be recorded in the audit trail ({exc}).")
    finally:
        database.dispose()
    return DatabaseCheck(
        _shown(settings), backend, revision, head, problems, revision_read=revision_read
    )


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).splitlines()[0]


# -- backup -----------------------------------------------------------------------------------


def default_backup_path(settings: Settings, now: datetime | None = None) -> Path:
    """``<data dir>/backups/clinicfusion-YYYYmmddTHHMMSSZ.sqlite3`` (UTC)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return settings.data_dir / BACKUPS_FOLDER / f"clinicfusion-{moment:%Y%m%dT%H%M%SZ}.sqlite3"


def backup_database(
    settings: Settings,
    output: Path | None = None,
    *,
    key_sources: KeySources | None = None,
    now: datetime | None = None,
) -> BackupResult:
    """Online backup of the SQLite database to ``output`` (default: time-stamped file in the
    backups folder), verified; audited as ``database.backup``. PostgreSQL: NotAvailable."""
    if settings.database_path is None:
        raise NotAvailable(PG_DUMP_SENTENCE)
    _require_existing_file(settings, "back up")
    destination = (output or default_backup_path(settings, now)).expanduser().resolve()
    database, key = _open(settings, migrate=False, sqlcipher_key=None, sources=key_sources)
    try:
        if current_revision(database) is None:
            raise StorageError(
                f"The file {settings.database_path} holds no ClinicFusion schema, so there is "
                "nothing to back up."
            )
        try:
            result = backup_sqlite(database, destination, sqlcipher_key=key)
        except StorageError as exc:
            with database.write() as session:
                record_audit(
                    session,
                    Actor.system(),
                    "database.backup",
                    AuditAction.EXECUTE,
                    outcome=AuditOutcome.SERIOUS_FAILURE,
                    details={"file": str(destination), "error": exc.message},
                )
            raise
        with database.write() as session:
            record_audit(
                session,
                Actor.system(),
                "database.backup",
                AuditAction.EXECUTE,
                details={
                    "file": str(result.path),
                    "sha256": result.sha256,
                    "size_bytes": result.size_bytes,
                    "rows": result.total_rows,
                    "encrypted": result.encrypted,
                },
            )
    finally:
        database.dispose()
    return result


# -- encrypt ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncryptResult:
    path: Path
    key_source: str  # "passphrase" or "keyring"


def encrypt_database(
    settings: Settings, output: Path, *, key_sources: KeySources | None = None
) -> EncryptResult:
    """Write an encrypted (SQLCipher) copy of the plain SQLite database to ``output``.

    The copy's key is the passphrase (environment or prompt) or, failing that, a new random
    key stored in the OS keyring under the copy's path. The source is left as it is (only an
    audit event ``database.encrypt`` is added to it).
    """
    if settings.database_path is None:
        raise NotAvailable(
            "Encryption at rest with SQLCipher is for SQLite files; a PostgreSQL server "
            "encrypts its storage itself."
        )
    _require_existing_file(settings, "encrypt")
    if settings.encryption == "sqlcipher" or not is_plain_sqlite(settings.database_path):
        raise StorageError(
            f"The case database {settings.database_path} is already encrypted.",
            hint="Use `clinic-app db backup` for an encrypted copy.",
        )
    destination = output.expanduser().resolve()
    if destination.exists():
        raise StorageError(
            f"The file {destination} already exists; it was left unchanged.",
            hint="Choose a new file name for the encrypted copy.",
        )
    database, _key = _open(settings, migrate=False, sqlcipher_key=None, sources=key_sources)
    try:
        key, source = _key_for(
            destination, key_sources or KeySources(), create=True, purpose="encrypted copy"
        )
        encrypt_copy(settings.database_path, destination, key)
        with database.write() as session:
            record_audit(
                session,
                Actor.system(),
                "database.encrypt",
                AuditAction.EXECUTE,
                details={"file": str(destination), "key_source": source},
            )
    finally:
        database.dispose()
    return EncryptResult(destination, source)
