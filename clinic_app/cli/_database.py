"""Opening the case database from the command line, the same way for every command."""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clinic_app.config.settings import Settings
    from clinic_app.services.database import KeySources
    from clinic_app.storage.engine import Database


def key_sources() -> KeySources:
    """Environment, OS keyring, and a passphrase prompt when a person is at the terminal."""
    from clinic_app.services.database import KeySources

    return KeySources(prompt=getpass.getpass if sys.stdin.isatty() else None)


def open_cli_database(settings: Settings) -> Database:
    """Open (and migrate) the configured database; audit keys are bound by open_database."""
    from clinic_app.services.database import open_database

    return open_database(settings, key_sources=key_sources())
