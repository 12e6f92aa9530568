"""Upgrade, check and online backup of the case database (services/database.py, storage/backup)."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from clinic_app.config.settings import Settings, load_settings
from clinic_app.domain.errors import NotAvailable, StorageError
from clinic_app.services.database import (
    PG_DUMP_SENTENCE,
    backup_database,
    check_database,
    default_backup_path,
    open_database,
    upgrade_database,
)
from clinic_app.storage.backup import backup_sqlite, sqlite_problems, table_row_counts
from clinic_app.storage.engine import Database, create_database_engine
from clinic_app.storage.migrate import current_revision, downgrade, head_revision
from clinic_app.storage.orm import AuditEvent, Case, NoteVersion, Patient


def settings_for(data_dir: Path, database_url: str | None = None) -> Settings:
    env = {"CLINICFUSION_DATABASE_URL": database_url} if database_url else {}
    return load_settings(data_dir, environ=env)


def populate(database: Database, count: int, *, start: int = 0, marker: str = "NOTE") -> None:
    """``count`` patients, each with one case and one note (enough rows for many pages)."""
    with database.write() as session:
        for number in range(start, start + count):
            note = f"{marker} {number} " + "lorem ipsum dolor " * 30
            case = Case(case_uid=f"case-{number}", patient=Patient(pseudonym=f"P-{number:06d}"))
            case.notes.append(
                NoteVersion(version=1, text=note, sha256=hashlib.sha256(note.encode()).hexdigest())
            )
            session.add(case)


def audit_events(database: Database, event_type: str) -> list[AuditEvent]:
    with database.read() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.event_type == event_type)
                .order_by(AuditEvent.sequence)
            )
        )


# -- upgrade and check on both back ends ---------------------------------------------------


def test_upgrade_reports_from_and_to_and_is_audited(data_dir: Path, database_url: str) -> None:
    settings = settings_for(data_dir, database_url)
    first = upgrade_database(settings)
    assert (first.from_revision, first.to_revision, first.changed) == (None, head_revision(), True)
    again = upgrade_database(settings)
    assert (again.from_revision, again.to_revision, again.changed) == (
        head_revision(),
        head_revision(),
        False,
    )
    database = open_database(settings, migrate=False)
    events = audit_events(database, "database.upgrade")
    database.dispose()
    assert [(e.action, e.username, e.details) for e in events] == [
        ("U", "system", {"from_revision": None, "to_revision": head_revision()}),
        ("U", "system", {"from_revision": head_revision(), "to_revision": head_revision()}),
    ]


def test_check_passes_on_a_healthy_database_and_is_audited(
    data_dir: Path, database_url: str
) -> None:
    settings = settings_for(data_dir, database_url)
    database = open_database(settings)
    populate(database, 5)
    report = check_database(settings)
    assert report.ok, report.problems
    assert report.revision == report.head == head_revision()
    assert report.backend == database.backend
    events = audit_events(database, "database.check")
    database.dispose()
    assert [(e.action, e.outcome, e.details) for e in events] == [("E", 0, {"problems": 0})]


def test_check_reports_a_database_without_schema(data_dir: Path, database_url: str) -> None:
    settings = settings_for(data_dir, database_url)
    database = open_database(settings)
    downgrade(database, "base")
    database.dispose()
    report = check_database(settings)
    assert not report.ok
    assert report.revision is None
    assert report.problems == [
        "The database has no ClinicFusion schema yet; run `clinic-app db upgrade`."
    ]


def test_check_reports_schema_drift(data_dir: Path, database_url: str) -> None:
    settings = settings_for(data_dir, database_url)
    database = open_database(settings)
    with database.write() as session:
        session.execute(text("ALTER TABLE patients ADD COLUMN favourite_colour VARCHAR(20)"))
    database.dispose()
    report = check_database(settings)
    assert not report.ok
    assert len(report.problems) == 1
    assert "differs from what this version expects in 1 place" in report.problems[0]
    assert "favourite_colour" in report.problems[0]


def test_check_reports_a_newer_revision(data_dir: Path, database_url: str) -> None:
    settings = settings_for(data_dir, database_url)
    database = open_database(settings)
    with database.write() as session:
        session.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    database.dispose()
    report = check_database(settings)
    assert report.revision == "f00d"
    assert report.problems == [
        f"The schema revision is f00d, which is newer than this version of ClinicFusion knows "
        f"(newest {head_revision()}); use the newer version that wrote it."
    ]


def test_check_of_a_missing_sqlite_file_creates_nothing(data_dir: Path) -> None:
    settings = settings_for(data_dir)
    report = check_database(settings)
    assert not report.ok
    assert "There is no case database at" in report.problems[0]
    assert not data_dir.exists()


# -- SQLite file health --------------------------------------------------------------------


def test_check_detects_a_damaged_sqlite_file(data_dir: Path) -> None:
    settings = settings_for(data_dir)
    database = open_database(settings)
    populate(database, 300)
    database.dispose()
    path = settings.database_path
    assert path is not None
    size = path.stat().st_size
    assert size > 100 * 4096
    with path.open("r+b") as handle:  # one page in the middle of the populated file
        handle.seek((size // 4096 // 2) * 4096)
        handle.write(random.Random(7).randbytes(4096))
    report = check_database(settings)
    assert not report.ok
    assert any(
        "integrity check" in problem and "malformed" in problem for problem in report.problems
    ), report.problems
    # A damaged file gets no audit event written into it.
    with sqlite3.connect(path) as connection:
        count = connection.execute(
            "SELECT count(*) FROM audit_events WHERE event_type = 'database.check'"
        ).fetchone()[0]
    assert count == 0


def test_sqlite_problems_names_foreign_key_violations_and_journal_mode(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "plain.sqlite3", isolation_level=None)
    connection.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    connection.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id REFERENCES parent)")
    connection.execute("INSERT INTO child VALUES (1, 42)")  # foreign_keys is off by default
    problems = sqlite_problems(connection)
    connection.close()
    assert problems == [
        "1 row(s) refer to rows that do not exist (foreign key check, tables: child).",
        "The journal mode is 'delete', not 'wal': readers and the writer block each other "
        "(WAL is not available on some network drives).",
    ]


# -- backup ----------------------------------------------------------------------------------


def test_backup_while_another_connection_holds_a_write_transaction(data_dir: Path) -> None:
    settings = settings_for(data_dir)
    database = open_database(settings)
    populate(database, 50)
    assert settings.database_path is not None
    writer = sqlite3.connect(settings.database_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(
        "INSERT INTO patients (pseudonym, created_at) VALUES ('P-UNCOMMITTED', "
        "'2024-01-01 00:00:00.000000')"
    )
    try:
        result = backup_sqlite(database, data_dir / "copy.sqlite3")
    finally:
        writer.execute("COMMIT")
        writer.close()
    database.dispose()

    assert result.table_rows["patients"] == 50
    assert result.table_rows["note_versions"] == 50
    assert not result.encrypted
    copy = Database(create_database_engine(f"sqlite:///{result.path}"))
    with copy.read() as session:
        pseudonyms = set(session.scalars(select(Patient.pseudonym)))
    raw = copy.engine.raw_connection()
    assert sqlite_problems(raw.driver_connection) == []
    assert table_row_counts(raw.driver_connection) == result.table_rows
    raw.close()
    assert current_revision(copy) == head_revision()
    copy.dispose()
    assert "P-UNCOMMITTED" not in pseudonyms
    assert pseudonyms == {f"P-{number:06d}" for number in range(50)}
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == result.sha256
    assert not list(data_dir.glob(".copy.sqlite3.partial*"))


def test_backup_while_the_app_keeps_writing(data_dir: Path) -> None:
    settings = settings_for(data_dir)
    database = open_database(settings)
    populate(database, 200)
    stop = threading.Event()
    written: list[int] = []
    failures: list[BaseException] = []

    def keep_writing() -> None:
        number = 1000
        try:
            while not stop.is_set():
                populate(database, 5, start=number)
                number += 5
                written.append(number)
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        while len(written) < 3:  # the writer is demonstrably running
            stop.wait(0.01)
        result = backup_database(settings, data_dir / "during-writes.sqlite3")
        after_backup = len(written)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert after_backup >= 3

    with database.read() as session:
        live_patients = session.scalar(select(func.count()).select_from(Patient))
    patients = result.table_rows["patients"]
    # A consistent snapshot: every note has its case and patient, and it lies between the
    # state before the backup and now.
    assert 200 < patients <= (live_patients or 0)
    assert result.table_rows["cases"] == result.table_rows["note_versions"] == patients
    copy = sqlite3.connect(result.path)
    assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert copy.execute("PRAGMA foreign_key_check").fetchall() == []
    copy.close()

    (event,) = audit_events(database, "database.backup")
    database.dispose()
    assert event.action == "E"
    assert event.outcome == 0
    assert event.details["file"] == str(result.path)
    assert event.details["sha256"] == result.sha256
    assert event.details["rows"] == result.total_rows
    assert event.details["encrypted"] is False


def test_backup_without_output_is_time_stamped_in_the_backups_folder(data_dir: Path) -> None:
    settings = settings_for(data_dir)
    open_database(settings).dispose()
    moment = datetime(2024, 3, 9, 14, 5, 7, tzinfo=UTC)
    result = backup_database(settings, now=moment)
    assert result.path == data_dir / "backups" / "clinicfusion-20240309T140507Z.sqlite3"
    assert result.path == default_backup_path(settings, moment)
    assert result.path.is_file()


def test_backup_never_overwrites_a_file(data_dir: Path) -> None:
    settings = settings_for(data_dir)
    open_database(settings).dispose()
    target = data_dir / "existing.sqlite3"
    target.write_bytes(b"keep me")
    with pytest.raises(StorageError, match="already exists; it was left unchanged"):
        backup_database(settings, target)
    assert target.read_bytes() == b"keep me"


def test_backup_of_a_missing_database_creates_nothing(data_dir: Path) -> None:
    with pytest.raises(StorageError, match=r"There is no case database at .* nothing to back up"):
        backup_database(settings_for(data_dir), data_dir / "copy.sqlite3")
    assert not data_dir.exists()


def test_backup_on_postgresql_points_to_pg_dump(data_dir: Path) -> None:
    settings = settings_for(data_dir, "postgresql+psycopg://clinic@db.invalid/cases")
    with pytest.raises(NotAvailable) as caught:
        backup_database(settings)
    assert str(caught.value) == PG_DUMP_SENTENCE
    assert "pg_dump is the tool" in PG_DUMP_SENTENCE
    assert caught.value.exit_code == 2
