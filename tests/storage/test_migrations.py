from __future__ import annotations

from sqlalchemy import inspect, text

from clinic_app.storage.engine import Database, create_database_engine
from clinic_app.storage.migrate import (
    current_revision,
    downgrade,
    head_revision,
    schema_differences,
    upgrade,
)
from clinic_app.storage.orm import Base


def test_upgrade_head_on_an_empty_database_equals_the_orm(database_url: str) -> None:
    db = Database(create_database_engine(database_url))
    assert current_revision(db) is None
    upgrade(db)
    assert current_revision(db) == head_revision()
    assert schema_differences(db) == []
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    db.dispose()


def test_downgrade_and_upgrade_round_trip(database: Database) -> None:
    downgrade(database, "base")
    assert current_revision(database) is None
    assert set(inspect(database.engine).get_table_names()) <= {"alembic_version"}
    upgrade(database)
    assert current_revision(database) == head_revision()
    assert schema_differences(database) == []


def test_upgrade_is_idempotent_and_seeds_the_chain_head(database: Database) -> None:
    upgrade(database)
    with database.read() as session:
        head = session.execute(text("SELECT last_sequence, last_hash FROM audit_chain_head")).one()
    assert head == (0, "0" * 64)
