"""SQLite as the app configures it: pragmas on every connection, and read-then-write
transactions that never fail with "database is locked" under concurrency."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from clinic_app.domain.records import Role
from clinic_app.storage.engine import Database, create_database_engine
from clinic_app.storage.migrate import upgrade
from clinic_app.storage.orm import User


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Database:
    db = Database(create_database_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}"))
    upgrade(db)
    return db


def test_every_connection_gets_the_pragmas(sqlite_db: Database) -> None:
    with sqlite_db.read() as session:
        pragmas = {
            name: session.execute(text(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
        }
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "synchronous": 2,
        "busy_timeout": 15000,
    }


def test_concurrent_read_then_write_transactions_all_succeed(sqlite_db: Database) -> None:
    """Each thread reads the user count, then inserts: with BEGIN IMMEDIATE none fails."""
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for round_no in range(15):
                with sqlite_db.write() as session:
                    count = session.scalar(select(func.count()).select_from(User)) or 0
                    session.add(
                        User(
                            username=f"u{index}-{round_no}-{count}",
                            display_name="x",
                            role=Role.CLINICIAN,
                            password_hash="!",
                        )
                    )
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with sqlite_db.read() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 90


def test_plain_deferred_begin_does_fail_under_the_same_load(tmp_path: Path) -> None:
    """The reason for BEGIN IMMEDIATE: the driver's deferred BEGIN hits 'database is locked'
    when two read-then-write transactions overlap (busy_timeout cannot help an upgrade)."""
    path = tmp_path / "plain.sqlite3"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.execute("CREATE TABLE t (n INTEGER)")
    setup.commit()
    setup.close()
    locked: list[str] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        connection = sqlite3.connect(path, timeout=2, isolation_level=None)
        barrier.wait()
        for _ in range(20):
            try:
                connection.execute("BEGIN")  # deferred: a read snapshot, no write lock yet
                connection.execute("SELECT count(*) FROM t").fetchone()
                connection.execute("INSERT INTO t VALUES (1)")
                connection.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                locked.append(str(exc))
                connection.execute("ROLLBACK")
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert locked and all("locked" in message for message in locked)
