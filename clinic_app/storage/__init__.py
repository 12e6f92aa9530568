"""Case store: SQLAlchemy engine and ORM, Alembic migrations, audit chain, privacy ledger."""
