"""Engines and sessions for SQLite (the default), SQLCipher-encrypted SQLite and PostgreSQL.

SQLite settings, set on every connection:
- ``journal_mode=WAL``: readers never block the writer and the writer never blocks readers.
- ``foreign_keys=ON``: SQLite ignores foreign keys unless told, per connection.
- ``busy_timeout``: a writer waits up to 15 s for another writer instead of failing at once.
- ``synchronous=FULL``: in WAL mode, NORMAL can lose the last commits on power loss (not on a
  crash of the app); a clinician's signed decision and its audit event must survive a power
  cut once the app has said "saved", so every commit is fsync'd. The cost, about one fsync per
  transaction, is measured in bench/ and is small next to a human's edit.
- Write transactions start with ``BEGIN IMMEDIATE``: with pysqlite's default deferred BEGIN, a
  read-then-write transaction that meets another writer fails with "database is locked" at its
  first write, after the busy timeout cannot help (39 % of such transactions failed when tried
  here). IMMEDIATE takes the write lock at BEGIN, where busy_timeout queues it. Read-only work
  uses :meth:`Database.read`, which begins a deferred transaction and never blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from clinic_app.domain.errors import StorageError
from clinic_app.storage.guards import install_guards

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 15_000
_BEGIN_OPTION = "clinicfusion_sqlite_begin"


def _parse_url(database_url: str | URL) -> URL:
    try:
        return make_url(database_url)
    except ArgumentError as exc:
        raise StorageError(
            f"The database URL '{database_url}' is not valid.",
            hint="Use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB.",
        ) from exc


def _configure_sqlite(engine: Engine, key: str | None) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver: we emit BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if key is not None:
                # SQLCipher: the key must be the first statement that touches the file. Its own
                # log would print "hmac check failed" lines on stderr for a wrong key; the
                # StorageError below says it in one sentence instead.
                cursor.execute("PRAGMA cipher_log_level = NONE")
                quoted = key.replace("'", "''")
                cursor.execute(f"PRAGMA key = '{quoted}'")
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


def create_database_engine(
    database_url: str | URL, *, sqlcipher_key: str | None = None, echo: bool = False
) -> Engine:
    """An engine with the pragmas and transaction behaviour above (SQLite) or a pinged pool."""
    url = _parse_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        extra: dict[str, Any] = {}
        if sqlcipher_key is not None:
            try:
                from sqlcipher3 import dbapi2 as sqlcipher
            except ImportError as exc:
                raise StorageError(
                    "Database encryption needs the sqlcipher3 package, which is not installed."
                ) from exc
            extra["module"] = sqlcipher
        # A pool of open connections, for plain and encrypted files alike. Closing the last
        # connection to a WAL database checkpoints and deletes the WAL (extra fsyncs): with a
        # fresh connection per session every transaction took ~4x longer (measured, bench/), and
        # with SQLCipher each new connection also costs ~0.1 s of key derivation. The backup API
        # works with the pool open; Database.dispose() closes the connections.
        pool: dict[str, Any] = {"poolclass": QueuePool, "pool_size": 4, "max_overflow": 8}
        engine = create_engine(url, echo=echo, **pool, **extra)
        _configure_sqlite(engine, sqlcipher_key)
        return engine
    if backend == "postgresql":
        return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=5)
    raise StorageError(
        f"The database back end '{backend}' is not supported.",
        hint="Use SQLite (the default) or PostgreSQL.",
    )


class Database:
    """One engine and one sessionmaker; services open a short session per user action."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_engine = (
            engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"})
            if engine.dialect.name == "sqlite"
            else engine
        )
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)
        for factory in (self._sessions, self._read_sessions):
            install_guards(factory)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A read-write unit of work: commits on success, rolls back on any exception."""
        with _translate_errors(self), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work (deferred BEGIN on SQLite); never commits changes.

        Closing the session ends the transaction without expiring what was loaded, so the
        objects can still be read (not lazily loaded) after the block."""
        with _translate_errors(self), self._read_sessions() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _translate_errors(database: Database) -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        message = str(exc.orig)
        if "locked" in message or "busy" in message:
            raise StorageError(
                "The case database is busy with another workstation's or process's change.",
                hint="Try again in a moment.",
            ) from exc
        if "file is not a database" in message:
            raise cannot_open_error(database.engine) from exc
        raise StorageError(f"The case database reported an error: {message}.") from exc
    except DatabaseError as exc:
        # sqlcipher3 raises DatabaseError (not OperationalError) for a wrong key.
        if "file is not a database" in str(exc.orig):
            raise cannot_open_error(database.engine) from exc
        if "malformed" in str(exc.orig):
            raise StorageError(
                f"The case database is damaged ({exc.orig}).",
                hint="Run `clinic-app db check`, then restore the newest good backup.",
            ) from exc
        raise


def cannot_open_error(engine: Engine) -> StorageError:
    """The one error for a file SQLite cannot read: wrong key, not encrypted, or damaged."""
    where = engine.url.database or engine.url.render_as_string(hide_password=True)
    return StorageError(
        f"The case database {where} cannot be opened: wrong passphrase or key, encrypted "
        "without a key given (or the reverse), or the file is damaged or not a ClinicFusion "
        "database.",
        hint="Check the passphrase or key and the 'encryption' setting, or restore the "
        "database from a backup.",
    )
