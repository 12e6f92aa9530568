"""Alembic environment: always given a live connection by clinic_app.storage.migrate."""

from __future__ import annotations

from alembic import context

from clinic_app.storage.orm import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations through `clinic-app db upgrade`, not the alembic CLI.")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
    compare_type=True,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
