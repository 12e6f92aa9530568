"""Logging to a rotating file in the data dir (and warnings to stderr for the CLI).

Log lines carry ids and file hashes, never patient names or note text: logs are sent to IT
when asking for help and must not hold PHI.
"""

from __future__ import annotations

import logging
import logging.handlers
import time

from clinic_app.config.settings import Settings

#: Marks the handlers this module installs so a second call replaces them instead of doubling.
_HANDLER_TAG = "_clinicfusion_handler"
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 5


class _UtcFormatter(logging.Formatter):
    converter = staticmethod(time.gmtime)


def setup_logging(settings: Settings, *, stderr_level: int | None = logging.WARNING) -> None:
    """Send the app's log records to ``<data dir>/logs/clinicfusion.log`` (rotated, UTF-8).

    Call after :func:`ensure_data_dirs`. Calling again (tests, a second data dir) replaces the
    handlers installed before.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_TAG, False):
            root.removeHandler(handler)
            handler.close()

    file_handler = logging.handlers.RotatingFileHandler(
        settings.log_file, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    file_handler.setFormatter(
        _UtcFormatter(
            "%(asctime)s.%(msecs)03dZ %(levelname)-7s %(process)d %(threadName)s "
            "%(name)s: %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S",
        )
    )
    file_handler.setLevel(settings.log_level)
    setattr(file_handler, _HANDLER_TAG, True)
    root.addHandler(file_handler)

    if stderr_level is not None:
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        console.setLevel(stderr_level)
        setattr(console, _HANDLER_TAG, True)
        root.addHandler(console)

    root.setLevel(min(logging.getLevelName(settings.log_level), stderr_level or logging.CRITICAL))
    logging.captureWarnings(True)
