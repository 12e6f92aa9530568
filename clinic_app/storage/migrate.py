"""Schema migrations: the app upgrades its database to the newest revision at start."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from clinic_app.domain.errors import StorageError
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import Base

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision this version of ClinicFusion knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _run(database: Database, action: str, target: str) -> None:
    config = _config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, target)


def upgrade(database: Database, target: str = "head") -> None:
    """Migrate to ``target``; refuse a database newer than this app (a downgrade loses data)."""
    known = {rev.revision for rev in ScriptDirectory.from_config(_config()).walk_revisions()}
    current = current_revision(database)
    if current is not None and current not in known:
        raise StorageError(
            f"The case database has schema revision {current}, which is newer than this "
            f"version of ClinicFusion knows (newest {head_revision()}).",
            hint="Install the newer ClinicFusion that wrote it; do not open it with this one.",
        )
    if current != head_revision() or target != "head":
        log.info("Migrating the case database from %s to %s", current or "empty", target)
    _run(database, "upgrade", target)


def downgrade(database: Database, target: str) -> None:
    _run(database, "downgrade", target)


def schema_differences(database: Database) -> list[object]:
    """Differences between the live schema and the ORM (empty when they agree)."""
    with database.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": True}
        )
        return list(compare_metadata(context, Base.metadata))
