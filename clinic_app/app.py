"""Composition root: settings -> data folders -> logging -> (database, services) -> Qt.

Kept free of heavy imports: torch, monai and transformers load only when a model is needed.
"""

from __future__ import annotations

import logging

from clinic_app._version import __version__
from clinic_app.config.logging_setup import setup_logging
from clinic_app.config.settings import Settings, ensure_data_dirs

log = logging.getLogger(__name__)


def prepare(settings: Settings, *, stderr_level: int | None = logging.WARNING) -> None:
    """Create the data folders and start logging; raises ConfigError if the folder is unusable."""
    ensure_data_dirs(settings)
    setup_logging(settings, stderr_level=stderr_level)
    log.info("ClinicFusion %s starting with data dir %s", __version__, settings.data_dir)


def launch_gui(settings: Settings) -> int:
    """Start the desktop app (the default command)."""
    prepare(settings)
    from clinic_app.gui.application import run_gui

    return run_gui(settings)
