"""The main window: menu, intended-use banner and status bar, and this installation's state."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from clinic_app._version import __version__
from clinic_app.config.settings import Settings
from clinic_app.domain.intended_use import INTENDED_USE, INTENDED_USE_SHORT
from clinic_app.gui.dialogs import AboutDialog, SystemCheckDialog
from clinic_app.services.diagnostics import Check, quick_checks
from clinic_app.storage.engine import Database

_BANNER_STYLE = (
    "QLabel#intendedUseBanner { background: #fff3cd; color: #664d03; "
    "border-bottom: 1px solid #e0c36a; padding: 6px 12px; font-weight: 600; }"
)
_STATUS_COLOURS = {"ok": "#1e7b34", "warn": "#8a6100", "fail": "#b02a37"}


class MainWindow(QMainWindow):
    """Top-level window; case views are added to its central area as they are built."""

    def __init__(self, settings: Settings, database: Database | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.database = database
        self.setWindowTitle(f"ClinicFusion {__version__} \u2014 research use only")
        self.resize(1100, 720)
        self._dialogs: list[QWidget] = []

        self.banner = QLabel(INTENDED_USE_SHORT)
        self.banner.setObjectName("intendedUseBanner")
        self.banner.setStyleSheet(_BANNER_STYLE)
        self.banner.setWordWrap(True)
        self.banner.setToolTip(INTENDED_USE)

        self.installation_form = QFormLayout()
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.banner)
        outer.addWidget(self._build_home())
        outer.addStretch(1)
        self.setCentralWidget(central)

        self._build_menus()
        self.intended_use_label = QLabel(INTENDED_USE_SHORT)
        self.intended_use_label.setObjectName("intendedUseStatus")
        self.statusBar().addPermanentWidget(self.intended_use_label)
        self.statusBar().showMessage("Ready", 5000)
        self.refresh_installation()

    # -- layout -------------------------------------------------------------------------------
    def _build_home(self) -> QWidget:
        home = QWidget()
        layout = QVBoxLayout(home)
        layout.setContentsMargins(32, 24, 32, 24)
        title = QLabel(f"<h1>ClinicFusion</h1><p>Version {html.escape(__version__)}</p>")
        intro = QLabel(
            "Multimodal clinical decision support for research: pathology images and whole "
            "slides, ECGs and clinical notes are analysed together by a local model whose "
            "suggestions come with calibrated probabilities and the evidence behind them. "
            "Everything runs on this computer; nothing is sent elsewhere."
        )
        intro.setWordWrap(True)
        heading = QLabel("<h3>This installation</h3>")
        buttons = QHBoxLayout()
        check_button = QPushButton("Run system check\u2026")
        check_button.clicked.connect(self.show_system_check)
        folder_button = QPushButton("Open data folder")
        folder_button.clicked.connect(self.open_data_folder)
        buttons.addWidget(check_button)
        buttons.addWidget(folder_button)
        buttons.addStretch(1)
        for widget in (title, intro, heading):
            layout.addWidget(widget)
        layout.addLayout(self.installation_form)
        layout.addSpacing(12)
        layout.addLayout(buttons)
        return home

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        open_folder = QAction("Open &data folder", self)
        open_folder.triggered.connect(self.open_data_folder)
        file_menu.addAction(open_folder)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        tools_menu = self.menuBar().addMenu("&Tools")
        check_action = QAction("&System check\u2026", self)
        check_action.triggered.connect(self.show_system_check)
        tools_menu.addAction(check_action)

        help_menu = self.menuBar().addMenu("&Help")
        intended = QAction("&Intended use", self)
        intended.triggered.connect(self.show_intended_use)
        help_menu.addAction(intended)
        about = QAction("&About ClinicFusion", self)
        about.triggered.connect(self.show_about)
        help_menu.addAction(about)
        about_qt = QAction("About &Qt", self)
        about_qt.triggered.connect(QApplication.aboutQt)
        help_menu.addAction(about_qt)

    # -- actions ------------------------------------------------------------------------------
    def refresh_installation(self) -> None:
        """Show the data folder, database and model bundle state (cheap checks, no torch)."""
        while self.installation_form.rowCount():
            self.installation_form.removeRow(0)
        for check in quick_checks(self.settings):
            self.installation_form.addRow(f"{check.name}:", _check_label(check))

    def _keep(self, dialog: QWidget) -> QWidget:
        self._dialogs = [d for d in self._dialogs if d.isVisible()] + [dialog]
        return dialog

    def show_about(self) -> AboutDialog:
        dialog = AboutDialog(self.settings, self)
        self._keep(dialog)
        dialog.open()
        return dialog

    def show_system_check(self) -> SystemCheckDialog:
        dialog = SystemCheckDialog(self.settings, self)
        self._keep(dialog)
        dialog.show()
        return dialog

    def show_intended_use(self) -> QMessageBox:
        box = QMessageBox(QMessageBox.Icon.Information, "Intended use", INTENDED_USE, parent=self)
        self._keep(box)
        box.open()
        return box

    def open_data_folder(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.settings.data_dir)))


def _check_label(check: Check) -> QLabel:
    colour = _STATUS_COLOURS[check.status]
    text = f"<span style='color:{colour}'>\u25cf</span> {html.escape(check.detail)}"
    if check.fix:
        text += f"<br><small>{html.escape(check.fix)}</small>"
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setProperty("checkStatus", check.status)
    return label
