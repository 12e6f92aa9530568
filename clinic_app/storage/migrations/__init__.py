"""Alembic migrations of the case store (run by the app itself: `upgrade head` at start)."""
