"""Export a case's explanation report: PDF, DICOM Encapsulated PDF and/or FHIR JSON.

The files are made by ``services.reports.export_report`` off the GUI thread; each one's sha256
is stored with the case and the export is audited. The dialog then lists what was written and
offers to open the PDF or the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from clinic_app.domain.errors import InputError
from clinic_app.domain.records import ReportKind
from clinic_app.gui.dialogs import show_error
from clinic_app.gui.workers import run_in_background
from clinic_app.services.context import Actor

_KINDS: tuple[tuple[ReportKind, str, str], ...] = (
    (ReportKind.PDF, "PDF report", "The explanation report to read, print or file"),
    (
        ReportKind.DICOM_PDF,
        "DICOM Encapsulated PDF",
        "The same PDF as a DICOM object for a PACS or VNA (pseudonymous identifiers only)",
    ),
    (
        ReportKind.FHIR,
        "FHIR R4 DiagnosticReport (JSON)",
        "A DiagnosticReport with one SNOMED-coded Observation per suggestion, for an EHR",
    ),
)


class ReportExportDialog(QDialog):
    """Choose formats and a folder, export, and show the files with their sha256."""

    #: Emitted with the written paths after an export.
    exported = Signal(list)

    def __init__(
        self,
        services: Any,
        actor: Actor,
        case_uid: str,
        folder: Path,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.services = services
        self.actor = actor
        self.case_uid = case_uid
        self.results: list[Any] = []
        self.running = False
        self.setObjectName("reportExportDialog")
        self.setWindowTitle(f"Export the report of case {case_uid}")
        self.resize(620, 420)

        intro = QLabel(
            "The report shows the model's suggestions with their evidence, your decisions and "
            "the model card, and states that ClinicFusion is for research and demonstration "
            "only. Each file's sha256 is recorded with the case and the export is audited."
        )
        intro.setWordWrap(True)
        self.kind_boxes: dict[ReportKind, QCheckBox] = {}
        kinds = QVBoxLayout()
        for kind, text, tip in _KINDS:
            box = QCheckBox(text)
            box.setObjectName(f"reportKind_{kind.value}")
            box.setToolTip(tip)
            box.setAccessibleName(text)
            box.setChecked(kind is ReportKind.PDF)
            kinds.addWidget(box)
            self.kind_boxes[kind] = box
        self.folder_edit = QLineEdit(str(folder))
        self.folder_edit.setObjectName("reportFolder")
        self.folder_edit.setAccessibleName("Folder for the report files")
        browse = QPushButton("Folder\u2026")
        browse.setToolTip("Choose where the report files are written")
        browse.clicked.connect(self._choose_folder)
        where = QHBoxLayout()
        where.addWidget(QLabel("Folder:"))
        where.addWidget(self.folder_edit, 1)
        where.addWidget(browse)
        self.overwrite_box = QCheckBox("Replace files of the same name")
        self.overwrite_box.setToolTip(
            "Without this, an existing report file is never overwritten (export again to a "
            "new folder instead)"
        )
        self.result_view = QPlainTextEdit()
        self.result_view.setObjectName("reportResults")
        self.result_view.setReadOnly(True)
        self.result_view.setAccessibleName("Exported files")

        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton(
            "Export", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.export_button.setObjectName("exportReport")
        self.export_button.clicked.connect(self.export)
        self.open_button = self.buttons.addButton(
            "Open PDF", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.open_button.setEnabled(False)
        self.open_button.clicked.connect(self.open_pdf)
        self.folder_button = self.buttons.addButton(
            "Show folder", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.folder_button.clicked.connect(self.open_folder)
        close = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        close.clicked.connect(self.close)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(kinds)
        layout.addLayout(where)
        layout.addWidget(self.overwrite_box)
        layout.addWidget(self.result_view, 1)
        layout.addWidget(self.buttons)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Report folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def chosen_kinds(self) -> list[ReportKind]:
        return [kind for kind, box in self.kind_boxes.items() if box.isChecked()]

    def export(self) -> None:
        """Write the chosen formats in the background; one error dialog if anything fails."""
        from clinic_app.services.reports import export_report

        kinds = self.chosen_kinds()
        if not kinds:
            show_error(self, InputError("Choose at least one report format."))
            return
        if self.running:
            return
        folder = Path(self.folder_edit.text().strip() or ".").expanduser()
        services, actor, uid = self.services, self.actor, self.case_uid
        overwrite = self.overwrite_box.isChecked()
        settings = services.settings

        def work() -> list[Any]:
            folder.mkdir(parents=True, exist_ok=True)
            return [
                export_report(
                    services.cases, settings, actor, uid, kind, folder, overwrite=overwrite
                )
                for kind in kinds
            ]

        def done(results: list[Any]) -> None:
            self.running = False
            self.export_button.setEnabled(True)
            self.results = results
            lines = [f"{r.kind.value}: {r.path}\n    sha256 {r.sha256}" for r in results]
            self.result_view.setPlainText("Exported:\n" + "\n".join(lines))
            self.open_button.setEnabled(any(r.kind is ReportKind.PDF for r in results))
            self.exported.emit([str(r.path) for r in results])

        def failed(exc: Exception) -> None:
            self.running = False
            self.export_button.setEnabled(True)
            self.result_view.setPlainText("Nothing was exported for the format that failed.")
            show_error(self, exc)

        self.running = True
        self.export_button.setEnabled(False)
        self.result_view.setPlainText("Making the report\u2026")
        run_in_background(work, done, failed)

    def open_pdf(self) -> None:
        for result in self.results:
            if result.kind is ReportKind.PDF:
                QDesktopServices.openUrl(QUrl.fromLocalFile(str(result.path)))
                return

    def open_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(self.folder_edit.text()))
