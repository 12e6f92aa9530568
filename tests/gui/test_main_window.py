from __future__ import annotations

import pytest
from PySide6.QtWidgets import QLabel

from clinic_app import __version__
from clinic_app.config.settings import Settings
from clinic_app.domain.intended_use import INTENDED_USE, INTENDED_USE_SHORT
from clinic_app.domain.records import Role

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, settings: Settings):  # type: ignore[no-untyped-def]
    from clinic_app.gui.main_window import MainWindow

    win = MainWindow(settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def test_main_window_shows_intended_use_at_all_times(window) -> None:  # type: ignore[no-untyped-def]
    assert window.isVisible()
    assert "research use only" in window.windowTitle()
    assert __version__ in window.windowTitle()
    assert window.banner.isVisible() and window.banner.text() == INTENDED_USE_SHORT
    status = window.intended_use_label
    assert status.isVisible() and status.text() == INTENDED_USE_SHORT
    assert "not a validated medical device" in INTENDED_USE_SHORT


def test_menus(window) -> None:  # type: ignore[no-untyped-def]
    titles = [action.text() for action in window.menuBar().actions()]
    assert titles == ["&File", "&Tools", "&Help"]
    help_menu = window.menuBar().actions()[2].menu()
    assert [a.text() for a in help_menu.actions()] == [
        "&Intended use",
        "&About ClinicFusion",
        "About &Qt",
    ]


def test_about_shows_version_and_the_intended_use_statement(window) -> None:  # type: ignore[no-untyped-def]
    dialog = window.show_about()
    assert dialog.isVisible()
    text = dialog.plain_text()
    assert f"ClinicFusion {__version__}" in text
    assert INTENDED_USE in text
    assert str(window.settings.data_dir) in text
    dialog.reject()
    assert not dialog.isVisible()


def test_intended_use_dialog(window) -> None:  # type: ignore[no-untyped-def]
    box = window.show_intended_use()
    assert box.text() == INTENDED_USE
    box.close()


def test_home_shows_this_installation(window, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    form = window.installation_form
    rows = {
        form.itemAt(row, form.ItemRole.LabelRole).widget().text(): form.itemAt(
            row, form.ItemRole.FieldRole
        ).widget()
        for row in range(form.rowCount())
    }
    assert set(rows) == {"Data folder:", "Database:", "Model bundle:"}
    assert str(settings.data_dir) in rows["Data folder:"].text()
    # the shipped demo bundle (assets/bundles/clinicfusion-demo) is found and verified
    assert rows["Model bundle:"].property("checkStatus") == "ok"
    assert "clinicfusion-demo" in rows["Model bundle:"].text()


def test_system_check_runs_in_the_background_and_shows_the_report(window, qtbot) -> None:  # type: ignore[no-untyped-def]
    dialog = window.show_system_check()
    assert dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.report is not None, timeout=120_000)
    text = dialog.output.toPlainText()
    assert "PyTorch" in text and "Qt" in text and "Model bundle" in text
    assert dialog.status.text() == "No problem found."
    dialog.copy_button.click()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == text
    dialog.reject()


def test_launch_gui_signs_in_then_opens_the_main_window_and_logs(  # type: ignore[no-untyped-def]
    qapp, settings: Settings, monkeypatch
) -> None:
    """The `clinic-app` default path: data folders, log file, login dialog, main window."""
    import sys

    from PySide6.QtCore import QTimer

    from clinic_app.app import launch_gui, prepare
    from clinic_app.gui.login import LoginDialog
    from clinic_app.gui.main_window import MainWindow
    from clinic_app.services.database import open_database
    from clinic_app.services.users import authenticate, create_first_admin, create_user

    prepare(settings, stderr_level=None)
    database = open_database(settings)
    create_first_admin(database, "it-admin", "Admin-password-2026!")
    admin = authenticate(database, "it-admin", "Admin-password-2026!")
    create_user(database, admin, "dr-lee", "Correct-horse-battery-9", Role.CLINICIAN)
    database.dispose()

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # run_gui installs its own
    seen: list[MainWindow] = []
    dialogs: list[LoginDialog] = []

    def drive() -> None:
        for widget in qapp.topLevelWidgets():
            if isinstance(widget, LoginDialog) and widget.isVisible() and widget not in dialogs:
                dialogs.append(widget)
                widget.username_edit.setText("dr-lee")
                widget.password_edit.setText("Correct-horse-battery-9")
                widget.sign_in_button.click()
        windows = [w for w in qapp.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if not windows:
            QTimer.singleShot(50, drive)
            return
        seen.extend(windows)
        for window in windows:
            window.close()
        # closing the last window ends app.exec()

    QTimer.singleShot(0, drive)
    assert launch_gui(settings) == 0
    assert len(dialogs) == 1
    assert [w.settings.data_dir for w in seen] == [settings.data_dir]
    assert seen[0].actor is not None and seen[0].actor.username == "dr-lee"
    assert seen[0].case_list is not None  # a clinician lands on the case list
    assert settings.logs_dir.is_dir() and settings.exports_dir.is_dir()
    log = settings.log_file.read_text(encoding="utf-8")
    assert "starting with data dir" in log and "user dr-lee" in log


def test_database_writes_from_the_gui_run_one_at_a_time_in_order(qapp) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time

    from clinic_app.gui.workers import db_write_pool, run_db_write

    assert db_write_pool().maxThreadCount() == 1
    active, peak, order, threads = [0], [0], [], set()
    lock = threading.Lock()

    def write(n: int) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        threads.add(threading.get_ident())
        time.sleep(0.01)
        with lock:
            active[0] -= 1
        return n

    for n in range(8):
        run_db_write(lambda n=n: write(n), order.append, lambda exc: order.append(exc))
    deadline = time.monotonic() + 20
    while len(order) < 8 and time.monotonic() < deadline:
        qapp.processEvents()
        time.sleep(0.005)  # sleeping releases the GIL the worker needs to emit its result
    assert order == list(range(8))
    assert peak[0] == 1
    assert threading.get_ident() not in threads


def test_an_administrator_gets_the_administration_page_not_the_case_list(  # type: ignore[no-untyped-def]
    qtbot, settings: Settings
) -> None:
    """Administrators do not read cases: no case list, no Case menu, the admin actions."""
    from clinic_app.app import prepare
    from clinic_app.gui.main_window import MainWindow
    from clinic_app.services.database import open_database
    from clinic_app.services.users import authenticate, create_first_admin

    prepare(settings, stderr_level=None)
    database = open_database(settings)
    create_first_admin(database, "it-admin", "Admin-password-2026!")
    admin = authenticate(database, "it-admin", "Admin-password-2026!")
    window = MainWindow(settings, database, admin)
    qtbot.addWidget(window)
    window.show()
    assert window.case_list is None and window.workspace is None
    assert window.findChild(QLabel, "adminHome") is not None
    titles = [action.text() for action in window.menuBar().actions()]
    assert titles == ["&File", "&Admin", "&Tools", "&Help"]
    window._refresh_list()  # what the demo seeding calls when it finishes: no case list, no error
    window.close()
    database.dispose()
