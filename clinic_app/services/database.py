"""Opening the case database: engine, encryption key, migration to the newest schema."""

from __future__ import annotations

import logging

from clinic_app.config.settings import Settings
from clinic_app.storage.engine import Database, create_database_engine
from clinic_app.storage.migrate import upgrade

log = logging.getLogger(__name__)


def open_database(
    settings: Settings, *, migrate: bool = True, sqlcipher_key: str | None = None
) -> Database:
    """Connect to the configured database and, by default, upgrade it to the newest schema.

    For a SQLite file the folder is created first. Raises StorageError with the reason when the
    database cannot be opened (damaged, wrong key, newer than this app).
    """
    if settings.database_path is not None:
        settings.database_path.parent.mkdir(parents=True, exist_ok=True)
    database = Database(create_database_engine(settings.database_url, sqlcipher_key=sqlcipher_key))
    if migrate:
        upgrade(database)
    return database
