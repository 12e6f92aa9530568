"""About, system check and error dialogs."""

from __future__ import annotations

import html
import platform

import PySide6
from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from clinic_app._version import __version__
from clinic_app.config.settings import Settings
from clinic_app.domain.errors import ClinicError
from clinic_app.domain.intended_use import INTENDED_USE
from clinic_app.gui.workers import run_in_background
from clinic_app.services.diagnostics import DoctorReport, run_doctor


class AboutDialog(QDialog):
    """Version, intended use, licence and the software versions this copy runs on."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About ClinicFusion")
        self.setMinimumWidth(520)
        text = (
            f"<h2>ClinicFusion {html.escape(__version__)}</h2>"
            "<p>Multimodal clinical decision support: pathology images and slides, ECG and "
            "clinical notes, with explained, calibrated suggestions for a reviewing "
            "clinician.</p>"
            f"<p><b>Intended use.</b> {html.escape(INTENDED_USE)}</p>"
            "<p>Open-source software under the Apache License 2.0. Qt for Python (PySide6) is "
            "used under the LGPL v3.</p>"
            f"<p><small>Python {html.escape(platform.python_version())}, PySide6 "
            f"{html.escape(PySide6.__version__)}, Qt {html.escape(qVersion())}<br>"
            f"Data folder: {html.escape(str(settings.data_dir))}</small></p>"
        )
        self.text_label = QLabel(text)
        self.text_label.setObjectName("aboutText")
        self.text_label.setWordWrap(True)
        self.text_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text_label)
        layout.addWidget(buttons)

    def plain_text(self) -> str:
        """The dialog's text without markup (for tests and copy/paste)."""
        return html.unescape(self.text_label.text().replace("<br>", "\n"))


class SystemCheckDialog(QDialog):
    """Runs `clinic-app doctor` in the background and shows its report, ready to copy."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("System check")
        self.resize(760, 420)
        self.report: DoctorReport | None = None
        self.status = QLabel("Checking this installation (PyTorch, Qt, database, model)...")
        self.output = QPlainTextEdit(readOnly=True)
        self.output.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.output.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        self.copy_button = buttons.addButton("Copy report", QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.setEnabled(False)
        self.copy_button.setToolTip("Copy the report to send it to your IT team")
        self.copy_button.clicked.connect(self.copy_report)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.output)
        layout.addWidget(buttons)
        run_in_background(lambda: run_doctor(settings), self._show_report, self._show_error)

    def _show_report(self, report: DoctorReport) -> None:
        self.report = report
        self.output.setPlainText(report.to_text())
        problems = len(report.failures)
        self.status.setText(
            "No problem found." if not problems else f"{problems} problem(s) found: see below."
        )
        self.copy_button.setEnabled(True)

    def copy_report(self) -> None:
        """Put the report on the clipboard (what IT asks for)."""
        QGuiApplication.clipboard().setText(self.output.toPlainText())

    def _show_error(self, exc: Exception) -> None:
        self.status.setText(f"The system check itself failed: {exc}")


def show_error(parent: QWidget | None, exc: Exception) -> QMessageBox:
    """One clear dialog for an error: a ClinicError's message, or a pointer to the log.

    Over a window it is window-modal but does not block (``open``), so background work and
    the event loop go on; without a window (start-up) it waits for the user."""
    if isinstance(exc, ClinicError):
        box = QMessageBox(QMessageBox.Icon.Warning, "ClinicFusion", str(exc), parent=parent)
    else:
        box = QMessageBox(
            QMessageBox.Icon.Critical,
            "ClinicFusion",
            "Something unexpected went wrong and was written to the log file. "
            f"Please send the log to your IT team. ({type(exc).__name__}: {exc})",
            parent=parent,
        )
    box.setObjectName("errorDialog")
    if parent is None:
        box.exec()
    else:
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
    return box
