"""Secret key files kept apart from the data (audit HMAC key, patient identifier key).

A key file holds exactly ``size`` random bytes, mode 0600 in a 0700 folder, created atomically
(temporary file, then an exclusive link), so a concurrent creator either wins or reads the
winner's complete key. A file other users can read is refused rather than used.
"""

from __future__ import annotations

import logging
import os
import secrets
import uuid
from pathlib import Path

from clinic_app.config.settings import ENV_KEYS_DIR
from clinic_app.domain.errors import ConfigError

log = logging.getLogger(__name__)
_RESTORE = "Restore it from your key backup; without it {consequence}."


def read_secret_file(path: Path, size: int, label: str, consequence: str) -> bytes:
    """The key in ``path``; ConfigError if it is unreadable, shared or damaged."""
    try:
        if os.name == "posix" and path.stat().st_mode & 0o077:
            raise ConfigError(
                f"The {label} file {path} can be read or changed by other users.",
                hint=f"Run `chmod 600 {path}` so that only you can use it.",
            )
        secret = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"The {label} file {path} cannot be read ({exc.strerror or exc})."
        ) from exc
    if len(secret) != size:
        raise ConfigError(
            f"The {label} file {path} is damaged: it must hold exactly {size} bytes.",
            hint=_RESTORE.format(consequence=consequence),
        )
    return secret


def create_secret_file(path: Path, size: int, label: str, consequence: str) -> bytes:
    """Write ``size`` random bytes to ``path`` unless another process just did; return the key."""
    folder = path.parent
    temporary = folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.name == "posix":
            folder.chmod(0o700)
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(handle, secrets.token_bytes(size))
            os.fsync(handle)
        finally:
            os.close(handle)
        try:
            os.link(temporary, path)
            log.info("Created the %s %s.", label, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
    except OSError as exc:
        raise ConfigError(
            f"The {label} cannot be created in {folder} ({exc.strerror or exc}).",
            hint=f"Set {ENV_KEYS_DIR} to a private folder you can write, outside the data folder.",
        ) from exc
    finally:
        temporary.unlink(missing_ok=True)
    return read_secret_file(path, size, label, consequence)


def load_or_create_secret(path: Path, size: int, label: str, consequence: str) -> bytes:
    if path.exists():
        return read_secret_file(path, size, label, consequence)
    return create_secret_file(path, size, label, consequence)
