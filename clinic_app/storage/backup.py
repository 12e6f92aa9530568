"""Online backup and low-level health checks of the SQLite case database.

The backup uses SQLite's online backup API (``Connection.backup``) on a connection of the
running engine, so it needs no downtime: in WAL mode it reads one committed snapshot while the
app keeps writing, and an open write transaction elsewhere neither blocks it nor leaks into it.
An encrypted (SQLCipher) database is copied page by page into a file keyed with the same key,
so the backup is encrypted too; plaintext never reaches the disk. The copy is verified
(``integrity_check`` and the row count of every table against the snapshot it came from)
before it is renamed to its final name.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from clinic_app.domain.errors import StorageError
from clinic_app.storage.encryption import quote_key
from clinic_app.storage.engine import SQLITE_BUSY_TIMEOUT_MS, Database


@dataclass(frozen=True)
class BackupResult:
    """A verified backup file and what it holds."""

    path: Path
    size_bytes: int
    sha256: str
    table_rows: dict[str, int]
    encrypted: bool
    seconds: float

    @property
    def total_rows(self) -> int:
        return sum(self.table_rows.values())


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_row_counts(connection: Any) -> dict[str, int]:
    """Rows in every table of a DB-API SQLite connection (internal sqlite_ tables excluded)."""
    names = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    return {
        name: int(
            connection.execute(f"SELECT count(*) FROM {_quote_identifier(name)}").fetchone()[0]
        )
        for name in names
    }


def sqlite_problems(connection: Any) -> list[str]:
    """What is wrong with an open SQLite file: integrity, foreign keys, journal mode.

    Each problem is a sentence; an empty list means the file is healthy. A page so damaged that
    SQLite refuses to read it is reported as a problem, not raised.
    """
    problems: list[str] = []
    try:
        rows = [str(row[0]) for row in connection.execute("PRAGMA integrity_check(20)")]
        if rows != ["ok"]:
            problems.append("SQLite's integrity check failed: " + "; ".join(rows[:5]) + ".")
    except Exception as exc:  # the driver's DatabaseError: "database disk image is malformed"
        problems.append(f"SQLite's integrity check could not read the file ({exc}).")
    try:
        violations = connection.execute("PRAGMA foreign_key_check").fetchall()
        if violations:
            tables = sorted({str(row[0]) for row in violations})
            problems.append(
                f"{len(violations)} row(s) refer to rows that do not exist "
                f"(foreign key check, tables: {', '.join(tables)})."
            )
    except Exception as exc:
        problems.append(f"The foreign key check could not read the file ({exc}).")
    try:
        mode = str(connection.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if mode != "wal":
            problems.append(
                f"The journal mode is '{mode}', not 'wal': readers and the writer block each "
                "other (WAL is not available on some network drives)."
            )
    except Exception as exc:
        problems.append(f"The journal mode could not be read ({exc}).")
    return problems


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _connect(module: ModuleType, path: Path, key: str | None) -> Any:
    connection = module.connect(str(path), isolation_level=None)
    if key is not None:
        connection.execute(f"PRAGMA key = {quote_key(key)}")
    connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    return connection


def backup_sqlite(
    database: Database, destination: Path, *, sqlcipher_key: str | None = None
) -> BackupResult:
    """Copy the running SQLite database to ``destination`` and verify the copy.

    ``sqlcipher_key`` must be the key the engine was opened with when the database is
    encrypted; the copy is keyed with it. Raises StorageError when the destination exists or
    the copy does not verify (nothing is left under ``destination`` then).
    """
    if database.backend != "sqlite":
        raise StorageError("The online backup works on SQLite databases only.")
    destination = destination.expanduser().resolve()
    if destination.exists():
        raise StorageError(
            f"The backup file {destination} already exists; it was left unchanged.",
            hint="Choose a new file name, or leave out --output for a time-stamped one.",
        )
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"The backup folder {destination.parent} cannot be created ({exc.strerror or exc})."
        ) from exc
    module: ModuleType = database.engine.dialect.dbapi  # type: ignore[assignment]
    partial = destination.with_name(f".{destination.name}.partial")
    for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        leftover.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        snapshot = _copy_snapshot(database, module, partial, sqlcipher_key)
        copied = _verify_copy(module, partial, sqlcipher_key)
        if copied != snapshot:
            differing = sorted(
                name
                for name in snapshot.keys() | copied.keys()
                if snapshot.get(name) != copied.get(name)
            )
            raise StorageError(
                "The backup copy does not hold the same rows as the database "
                f"(tables {', '.join(differing)}); it was removed.",
                hint="Run `clinic-app db check` and try the backup again.",
            )
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        partial.replace(destination)
    except module.Error as exc:
        raise StorageError(
            f"The backup to {destination} failed ({exc}); nothing was written there.",
            hint="Check the free space and permissions of the backup folder and try again.",
        ) from exc
    finally:
        for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
            leftover.unlink(missing_ok=True)
    return BackupResult(
        path=destination,
        size_bytes=destination.stat().st_size,
        sha256=_sha256(destination),
        table_rows=copied,
        encrypted=sqlcipher_key is not None,
        seconds=time.perf_counter() - started,
    )


def _copy_snapshot(
    database: Database, module: ModuleType, partial: Path, key: str | None
) -> dict[str, int]:
    """Back up one committed snapshot of the source; return its row counts.

    The counts and the backup run inside one read transaction of the source connection, so
    both see the same snapshot however much the app writes meanwhile.
    """
    raw = database.engine.raw_connection()
    try:
        source: Any = raw.driver_connection
        target = _connect(module, partial, key)
        try:
            source.execute("BEGIN DEFERRED")
            try:
                snapshot = table_row_counts(source)
                source.backup(target)
            finally:
                source.execute("ROLLBACK")
        finally:
            target.close()
    finally:
        raw.close()
    return snapshot


def _verify_copy(module: ModuleType, path: Path, key: str | None) -> dict[str, int]:
    connection = _connect(module, path, key)
    try:
        result = [str(row[0]) for row in connection.execute("PRAGMA integrity_check(5)")]
        if result != ["ok"]:
            raise StorageError(
                f"The backup copy failed SQLite's integrity check ({'; '.join(result)}); "
                "it was removed.",
                hint="Run `clinic-app db check`: the database itself may be damaged.",
            )
        return table_row_counts(connection)
    finally:
        connection.close()
