"""Create the QApplication and show the main window.

The main window's modules (and the database layer) are imported, and the database opened and
migrated, only after the splash screen is up, so the wait has something on screen.
"""

from __future__ import annotations

import logging
import sys
import types
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from clinic_app._version import __version__
from clinic_app.config.assets import asset_path
from clinic_app.config.settings import Settings
from clinic_app.domain.errors import ClinicError

if TYPE_CHECKING:
    from clinic_app.gui.main_window import MainWindow
    from clinic_app.storage.engine import Database

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
    """Open (and migrate) the database, sign in, show the main window, run the event loop.

    Errors opening the database are shown in a dialog, since a desktop launcher has no
    console; the exit status is the error's. Signing out returns to the login dialog."""
    app = create_application()
    from clinic_app.gui.splash import show_splash

    splash = show_splash()
    from clinic_app.gui.theme import apply_theme

    apply_theme(app, str(getattr(settings, "theme", "system")))
    splash.say("Loading…")
    from clinic_app.gui.dialogs import show_error
    from clinic_app.gui.main_window import MainWindow  # noqa: F401  (imported behind the splash)
    from clinic_app.gui.workers import db_write_pool
    from clinic_app.services.database import open_database

    splash.say("Opening the case database…")
    try:
        database = open_database(settings)
    except ClinicError as exc:
        log.error("The case database could not be opened: %s", exc)
        splash.close()
        show_error(None, exc)
        return exc.exit_code
    # Closes once the sign-in dialog's event loop runs, i.e. when that dialog is on screen.
    QTimer.singleShot(0, splash.close)
    try:
        while True:
            window = _signed_in_window(settings, database)
            if window is None:
                return 0
            status = int(app.exec())
            if not window.signed_out:
                return status
    finally:
        db_write_pool().waitForDone(30_000)
        database.dispose()


def _signed_in_window(settings: Settings, database: Database) -> MainWindow | None:
    """Sign in (creating the first admin on first run), then show the main window."""
    from clinic_app.gui.dialogs import show_error
    from clinic_app.gui.login import sign_in
    from clinic_app.gui.main_window import MainWindow

    wanted: list[bool] = []
    actor = sign_in(database, on_first_run=lambda _actor, seed: wanted.append(seed))
    if actor is None:
        return None
    seed_demo = any(wanted)
    window = MainWindow(settings, database, actor)

    def excepthook(
        kind: type[BaseException], exc: BaseException, tb: types.TracebackType | None
    ) -> None:
        log.error("Unhandled error in the GUI", exc_info=(kind, exc, tb))
        if isinstance(exc, Exception):
            show_error(window, exc)

    sys.excepthook = excepthook
    window.show()
    log.info("Main window shown (data dir %s, user %s)", settings.data_dir, actor.username)
    if seed_demo:
        window.seed_demo_cases()
    if window.workspace is not None:  # only roles that open cases need the model
        window.start_model_preload()
    return window
