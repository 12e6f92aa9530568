"""SQLCipher encryption at rest: settings, key sources, no plaintext on disk, wrong keys."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from keyring.backends import fail
from sqlalchemy import select

from clinic_app.config.settings import Settings, load_settings
from clinic_app.domain.errors import ConfigError, StorageError
from clinic_app.services.database import (
    ENV_DB_PASSPHRASE,
    KEYRING_SERVICE,
    KeySources,
    backup_database,
    check_database,
    encrypt_database,
    keyring_entry_name,
    open_database,
    resolve_database_key,
)
from clinic_app.storage.encryption import is_plain_sqlite
from clinic_app.storage.orm import AuditEvent, Case, NoteVersion, Patient

MARKER_PSEUDONYM = "ZEBRA-PSEUDONYM-7731"
MARKER_NOTE = "Distinctive note text: quokka on the ward 4242"
PASSPHRASE = {ENV_DB_PASSPHRASE: "correct horse battery staple"}


class MemoryKeyStore:
    """A keyring back end that keeps secrets in a dict (the OS keyring is `fail` here)."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password


def encrypted_settings(data_dir: Path) -> Settings:
    return load_settings(data_dir, environ={"CLINICFUSION_DB_ENCRYPTION": "sqlcipher"})


def add_marker_case(settings: Settings, sources: KeySources | None) -> None:
    database = open_database(settings, key_sources=sources)
    with database.write() as session:
        case = Case(case_uid="case-marker", patient=Patient(pseudonym=MARKER_PSEUDONYM))
        case.notes.append(
            NoteVersion(
                version=1, text=MARKER_NOTE, sha256=hashlib.sha256(MARKER_NOTE.encode()).hexdigest()
            )
        )
        session.add(case)
    database.dispose()


def raw_bytes(database_path: Path) -> bytes:
    """The main file and any -wal / -shm beside it."""
    return b"".join(
        path.read_bytes()
        for path in (database_path, *database_path.parent.glob(f"{database_path.name}-*"))
        if path.is_file()
    )


def holds_marker(blob: bytes) -> bool:
    return MARKER_PSEUDONYM.encode() in blob or MARKER_NOTE.encode() in blob


# -- settings --------------------------------------------------------------------------------


def test_encryption_setting_defaults_to_none_and_comes_from_file_or_environment(
    tmp_path: Path,
) -> None:
    assert load_settings(tmp_path, environ={}).encryption == "none"
    (tmp_path / "settings.toml").write_text('encryption = "SQLCipher"\n', encoding="utf-8")
    assert load_settings(tmp_path, environ={}).encryption == "sqlcipher"
    env = {"CLINICFUSION_DB_ENCRYPTION": "none"}
    assert load_settings(tmp_path, environ=env).encryption == "none"


def test_bad_encryption_setting_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'rot13' from CLINICFUSION_DB_ENCRYPTION is not one"):
        load_settings(tmp_path, environ={"CLINICFUSION_DB_ENCRYPTION": "rot13"})
    env = {
        "CLINICFUSION_DB_ENCRYPTION": "sqlcipher",
        "CLINICFUSION_DATABASE_URL": "postgresql+psycopg://clinic@db.local/cases",
    }
    with pytest.raises(ConfigError, match="applies to SQLite files only"):
        load_settings(tmp_path, environ=env)


# -- no plaintext on disk ----------------------------------------------------------------------


def test_plain_database_shows_the_marker_so_the_search_works(data_dir: Path) -> None:
    settings = load_settings(data_dir, environ={})
    add_marker_case(settings, None)
    assert settings.database_path is not None
    assert holds_marker(raw_bytes(settings.database_path))


def test_encrypted_database_holds_no_plaintext_in_the_file_or_its_wal(data_dir: Path) -> None:
    settings = encrypted_settings(data_dir)
    sources = KeySources(environ=PASSPHRASE)
    database = open_database(settings, key_sources=sources)
    with database.write() as session:
        session.add(Patient(pseudonym=MARKER_PSEUDONYM))
    path = settings.database_path
    assert path is not None
    wal = path.with_name(path.name + "-wal")
    assert wal.is_file() and wal.stat().st_size > 0  # the commit sits in the WAL, encrypted
    assert not holds_marker(raw_bytes(path))
    raw = database.engine.raw_connection()
    busy, _log_pages, _checkpointed = raw.driver_connection.execute(
        "PRAGMA wal_checkpoint(TRUNCATE)"
    ).fetchone()
    raw.close()
    database.dispose()
    assert busy == 0
    assert not wal.exists() or wal.stat().st_size == 0
    assert not holds_marker(raw_bytes(path))
    assert not is_plain_sqlite(path)
    with pytest.raises(sqlite3.DatabaseError, match="file is not a database"):
        sqlite3.connect(path).execute("SELECT count(*) FROM sqlite_master").fetchone()

    reopened = open_database(settings, key_sources=sources)
    with reopened.read() as session:
        assert session.scalars(select(Patient.pseudonym)).all() == [MARKER_PSEUDONYM]
    reopened.dispose()


def test_encrypted_backup_stays_encrypted_with_the_same_key(data_dir: Path) -> None:
    settings = encrypted_settings(data_dir)
    sources = KeySources(environ=PASSPHRASE)
    add_marker_case(settings, sources)
    result = backup_database(settings, data_dir / "backup.sqlite3", key_sources=sources)
    assert result.encrypted
    assert result.table_rows["patients"] == 1
    assert not holds_marker(raw_bytes(result.path))
    assert not is_plain_sqlite(result.path)

    copy_settings = load_settings(
        data_dir,
        environ={
            "CLINICFUSION_DB_ENCRYPTION": "sqlcipher",
            "CLINICFUSION_DATABASE_URL": f"sqlite:///{result.path}",
        },
    )
    copy = open_database(copy_settings, migrate=False, key_sources=sources)
    with copy.read() as session:
        assert session.scalars(select(NoteVersion.text)).all() == [MARKER_NOTE]
    copy.dispose()
    with pytest.raises(StorageError, match="wrong passphrase or key"):
        open_database(
            copy_settings, migrate=False, key_sources=KeySources(environ={ENV_DB_PASSPHRASE: "x"})
        )
    assert check_database(copy_settings, key_sources=sources).ok


# -- wrong or missing keys -------------------------------------------------------------------


def test_wrong_passphrase_is_one_clear_error_and_changes_nothing_on_disk(data_dir: Path) -> None:
    settings = encrypted_settings(data_dir)
    add_marker_case(settings, KeySources(environ=PASSPHRASE))
    path = settings.database_path
    assert path is not None
    files_before = sorted(p.name for p in data_dir.iterdir())
    digest_before = hashlib.sha256(path.read_bytes()).hexdigest()

    wrong = KeySources(environ={ENV_DB_PASSPHRASE: "Tr0ub4dor&3"})
    with pytest.raises(StorageError) as caught:
        open_database(settings, key_sources=wrong)
    message = str(caught.value)
    assert message.startswith(f"The case database {path} cannot be opened: wrong passphrase or key")
    assert "Check the passphrase or key" in message

    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest_before
    assert sorted(p.name for p in data_dir.iterdir()) == files_before
    report = check_database(settings, key_sources=wrong)
    assert not report.ok
    assert report.problems == [message]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest_before


def test_opening_an_encrypted_file_without_encryption_is_the_same_clear_error(
    data_dir: Path,
) -> None:
    add_marker_case(encrypted_settings(data_dir), KeySources(environ=PASSPHRASE))
    with pytest.raises(StorageError, match="cannot be opened: wrong passphrase or key"):
        open_database(load_settings(data_dir, environ={}))


def test_no_key_anywhere_is_a_config_error_naming_both_sources(data_dir: Path) -> None:
    settings = encrypted_settings(data_dir)
    no_keyring = KeySources(environ={}, keystore=fail.Keyring())
    with pytest.raises(ConfigError) as caught:
        open_database(settings, key_sources=no_keyring)
    assert ENV_DB_PASSPHRASE in str(caught.value)
    assert f"service 'ClinicFusion', name 'database:{settings.database_path}'" in str(caught.value)
    assert not data_dir.exists()  # nothing was created


def test_new_database_gets_a_random_key_kept_in_the_keyring(data_dir: Path) -> None:
    settings = encrypted_settings(data_dir)
    store = MemoryKeyStore()
    sources = KeySources(environ={}, keystore=store)
    add_marker_case(settings, sources)
    assert settings.database_path is not None
    stored = store.secrets[(KEYRING_SERVICE, keyring_entry_name(settings.database_path))]
    assert len(stored) == 64 and int(stored, 16) >= 0  # a raw 256-bit key, hex
    assert resolve_database_key(settings, sources) == f"x'{stored}'"
    assert not holds_marker(raw_bytes(settings.database_path))

    again = open_database(settings, key_sources=sources)  # same key from the keyring
    with again.read() as session:
        assert session.scalars(select(Patient.pseudonym)).all() == [MARKER_PSEUDONYM]
    again.dispose()
    with pytest.raises(ConfigError):  # an existing file never gets a new key
        open_database(settings, key_sources=KeySources(environ={}, keystore=MemoryKeyStore()))


def test_a_passphrase_in_the_keyring_and_the_prompt_are_key_sources(data_dir: Path) -> None:
    settings = encrypted_settings(data_dir)
    add_marker_case(settings, KeySources(environ=PASSPHRASE))
    assert settings.database_path is not None
    store = MemoryKeyStore()
    store.set_password(
        KEYRING_SERVICE,
        keyring_entry_name(settings.database_path),
        PASSPHRASE[ENV_DB_PASSPHRASE],
    )
    open_database(settings, key_sources=KeySources(environ={}, keystore=store)).dispose()

    asked: list[str] = []

    def prompt(message: str) -> str:
        asked.append(message)
        return PASSPHRASE[ENV_DB_PASSPHRASE]

    sources = KeySources(environ={}, keystore=fail.Keyring(), prompt=prompt)
    open_database(settings, key_sources=sources).dispose()
    assert asked == [f"Passphrase for the encrypted case database {settings.database_path}: "]


# -- encrypting a plain database -------------------------------------------------------------


def test_encrypt_writes_an_encrypted_copy_with_the_same_rows(data_dir: Path) -> None:
    settings = load_settings(data_dir, environ={})
    add_marker_case(settings, None)
    assert settings.database_path is not None
    plain_digest_rows = raw_bytes(settings.database_path)
    target = data_dir / "encrypted.sqlite3"
    result = encrypt_database(settings, target, key_sources=KeySources(environ=PASSPHRASE))
    assert (result.path, result.key_source) == (target, "passphrase")
    assert not holds_marker(raw_bytes(target))
    assert holds_marker(plain_digest_rows)

    copy_settings = load_settings(
        data_dir,
        environ={
            "CLINICFUSION_DB_ENCRYPTION": "sqlcipher",
            "CLINICFUSION_DATABASE_URL": f"sqlite:///{target}",
        },
    )
    report = check_database(copy_settings, key_sources=KeySources(environ=PASSPHRASE))
    assert report.ok, report.problems
    copy = open_database(copy_settings, key_sources=KeySources(environ=PASSPHRASE))
    with copy.read() as session:
        assert session.scalars(select(NoteVersion.text)).all() == [MARKER_NOTE]
        # The source's audit trail came along, chain and all.
        assert session.scalar(select(AuditEvent.event_type).order_by(AuditEvent.sequence))
    copy.dispose()

    source = open_database(settings)
    with source.read() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "database.encrypt")
        ).all()
    source.dispose()
    assert [(e.action, e.details) for e in events] == [
        ("E", {"file": str(target), "key_source": "passphrase"})
    ]


def test_encrypt_refuses_an_encrypted_database_and_an_existing_target(data_dir: Path) -> None:
    settings = encrypted_settings(data_dir)
    add_marker_case(settings, KeySources(environ=PASSPHRASE))
    with pytest.raises(StorageError, match="already encrypted"):
        encrypt_database(settings, data_dir / "x.sqlite3", key_sources=KeySources(environ={}))
    plain = load_settings(data_dir / "plain", environ={})
    open_database(plain).dispose()
    existing = data_dir / "existing.sqlite3"
    existing.write_bytes(b"keep")
    with pytest.raises(StorageError, match="already exists"):
        encrypt_database(plain, existing, key_sources=KeySources(environ=PASSPHRASE))
    assert existing.read_bytes() == b"keep"
