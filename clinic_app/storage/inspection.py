"""Read-only look at a database: does it exist, what back end, which schema revision.

Used by `clinic-app doctor` before anything is migrated, so it never creates or changes a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from clinic_app.domain.errors import StorageError


@dataclass(frozen=True)
class DatabaseStatus:
    """What `doctor` reports about the case database."""

    url: str  # with any password masked
    backend: str
    exists: bool
    schema_revision: str | None
    size_bytes: int | None = None


def database_status(database_url: str) -> DatabaseStatus:
    """Inspect the database at ``database_url`` without creating or modifying it."""
    try:
        url = make_url(database_url)
    except ArgumentError as exc:
        raise StorageError(
            f"The database URL '{database_url}' is not valid.",
            hint="Use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB.",
        ) from exc
    shown = url.render_as_string(hide_password=True)
    backend = url.get_backend_name()

    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            return DatabaseStatus(shown, backend, exists=False, schema_revision=None)
        path = Path(url.database)
        if not path.exists():
            return DatabaseStatus(shown, backend, exists=False, schema_revision=None)
        if not path.is_file():
            raise StorageError(f"The database path {path} is a folder, not a SQLite file.")
        # Read-only URI: inspecting must never create, lock for writing or migrate the file.
        engine = create_engine(
            f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true",
            connect_args={"timeout": 5},
        )
        size: int | None = path.stat().st_size
    else:
        engine = create_engine(url, pool_pre_ping=True)
        size = None

    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            revision = None
            if "alembic_version" in tables:
                revision = connection.execute(
                    text("SELECT version_num FROM alembic_version")
                ).scalar_one_or_none()
    except SQLAlchemyError as exc:
        original = getattr(exc, "orig", None)
        reason = str(original) if original is not None else str(exc)
        raise StorageError(
            f"The database {shown} cannot be read ({reason}).",
            hint="If it is a SQLite file, check it is a ClinicFusion database and not damaged; "
            "restore it from a backup otherwise.",
        ) from exc
    finally:
        engine.dispose()
    return DatabaseStatus(shown, backend, exists=True, schema_revision=revision, size_bytes=size)
