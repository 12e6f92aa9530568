"""SQLCipher encryption at rest: key formats, recognising encrypted files, encrypting a copy.

A key is the text given to ``PRAGMA key``: either a passphrase (SQLCipher derives the real
key with PBKDF2, about 0.1 s per connection here) or a raw 256-bit key written ``x'<64 hex>'``
(no derivation), which is what the app stores in the OS keyring. Where the key comes from
(keyring, environment, prompt) is decided in :mod:`clinic_app.services.database`.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from types import ModuleType

from clinic_app.domain.errors import StorageError

SQLITE_HEADER = b"SQLite format 3\x00"
_RAW_KEY = re.compile(r"[0-9a-fA-F]{64}")


def sqlcipher_module() -> ModuleType:
    """The sqlcipher3 DB-API module, or one clear StorageError when it is not installed."""
    try:
        from sqlcipher3 import dbapi2
    except ImportError as exc:
        raise StorageError(
            "Database encryption needs the sqlcipher3 package, which is not installed.",
            hint="Reinstall ClinicFusion with its dependencies, or set encryption to 'none'.",
        ) from exc
    module: ModuleType = dbapi2
    return module


def new_raw_key() -> str:
    """A fresh random 256-bit key as 64 hex digits (what the keyring stores)."""
    return secrets.token_hex(32)


def is_raw_key(text: str) -> bool:
    return _RAW_KEY.fullmatch(text) is not None


def raw_key_pragma(hex_key: str) -> str:
    """The ``PRAGMA key`` text for a raw key: SQLCipher skips the slow key derivation."""
    if not is_raw_key(hex_key):
        raise ValueError("a raw SQLCipher key is exactly 64 hex digits")
    return f"x'{hex_key.lower()}'"


def quote_key(key: str) -> str:
    """``key`` as a SQL string literal for ``PRAGMA key`` / ``ATTACH ... KEY``."""
    return "'" + key.replace("'", "''") + "'"


def is_plain_sqlite(path: Path) -> bool:
    """True when ``path`` starts with the plain SQLite header (an encrypted file does not)."""
    try:
        with path.open("rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def encrypt_copy(source: Path, destination: Path, key: str) -> None:
    """Write an encrypted copy of the plain SQLite file ``source`` with ``sqlcipher_export``.

    The copy is written beside ``destination`` and renamed into place only when complete, so a
    failure never leaves a half-written file under the final name. ``source`` is only read.
    """
    if not is_plain_sqlite(source):
        raise StorageError(
            f"The database {source} is not a plain SQLite file, so it cannot be encrypted "
            "(it may be encrypted already)."
        )
    if destination.exists():
        raise StorageError(
            f"The file {destination} already exists; it was left unchanged.",
            hint="Choose a new file name for the encrypted copy.",
        )
    module = sqlcipher_module()
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    partial.unlink(missing_ok=True)
    connection = module.connect(str(source), isolation_level=None)
    try:
        connection.execute("PRAGMA busy_timeout = 15000")
        connection.execute(
            f"ATTACH DATABASE {quote_key(str(partial))} AS encrypted KEY {quote_key(key)}"
        )
        # One transaction gives sqlcipher_export one consistent snapshot while the app writes.
        connection.execute("BEGIN")
        connection.execute("SELECT sqlcipher_export('encrypted')")
        version = connection.execute("PRAGMA main.user_version").fetchone()[0]
        connection.execute(f"PRAGMA encrypted.user_version = {int(version)}")
        connection.execute("COMMIT")
        connection.execute("DETACH DATABASE encrypted")
    except module.Error as exc:
        partial.unlink(missing_ok=True)
        raise StorageError(f"The encrypted copy could not be written ({exc}).") from exc
    finally:
        connection.close()
    _set_wal_and_check(module, partial, key)
    _fsync(partial)
    partial.replace(destination)


def _set_wal_and_check(module: ModuleType, path: Path, key: str) -> None:
    connection = module.connect(str(path), isolation_level=None)
    try:
        connection.execute(f"PRAGMA key = {quote_key(key)}")
        connection.execute("PRAGMA journal_mode = WAL")
        result = connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()
    if result != [("ok",)]:
        path.unlink(missing_ok=True)
        raise StorageError("The encrypted copy failed its integrity check and was removed.")


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
