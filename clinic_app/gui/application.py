"""Create the QApplication and show the main window."""

from __future__ import annotations

import logging
import sys
import types

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from clinic_app._version import __version__
from clinic_app.config.assets import asset_path
from clinic_app.config.settings import Settings
from clinic_app.domain.errors import ClinicError
from clinic_app.gui.dialogs import show_error
from clinic_app.gui.main_window import MainWindow
from clinic_app.gui.workers import db_write_pool
from clinic_app.services.database import open_database

log = logging.getLogger(__name__)


def create_application(argv: list[str] | None = None) -> QApplication:
    """The one QApplication, with the app's name, version and icon."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName("ClinicFusion")
    app.setApplicationDisplayName("ClinicFusion")
    app.setApplicationVersion(__version__)
    app.setOrganizationName("ClinicFusion")
    app.setDesktopFileName("clinicfusion")
    app.setWindowIcon(QIcon(str(asset_path("icons", "clinicfusion.svg"))))
    return app


def run_gui(settings: Settings) -> int:
    """Open (and migrate) the database, show the main window, run the event loop.

    Errors opening the database are shown in a dialog, since a desktop launcher has no
    console; the exit status is the error's."""
    app = create_application()
    try:
        database = open_database(settings)
    except ClinicError as exc:
        log.error("The case database could not be opened: %s", exc)
        show_error(None, exc)
        return exc.exit_code
    window = MainWindow(settings, database)

    def excepthook(
        kind: type[BaseException], exc: BaseException, tb: types.TracebackType | None
    ) -> None:
        log.error("Unhandled error in the GUI", exc_info=(kind, exc, tb))
        if isinstance(exc, Exception):
            show_error(window, exc)

    sys.excepthook = excepthook
    window.show()
    log.info("Main window shown (data dir %s)", settings.data_dir)
    try:
        return int(app.exec())
    finally:
        db_write_pool().waitForDone(30_000)
        database.dispose()
