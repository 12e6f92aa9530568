"""Import many cases at once: a folder with one sub-folder per case, or a CSV/JSON manifest.

The dialog only drives ``services.batch_import``: it checks the source first (plan: cases,
files and rows that cannot be read at all), then imports with progress and cancel, and shows
the import report, in which every file that failed is named with the reason. Files that were
imported before are skipped as duplicates, so running the same import twice is harmless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QThreadPool, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from clinic_app.domain.errors import Cancelled
from clinic_app.gui.dialogs import show_error
from clinic_app.gui.workers import JobHandle, run_in_background, run_job
from clinic_app.services.context import Actor

_INTRO = (
    "Choose a folder with one sub-folder per case (slide or image, ECG, note, optional "
    "vitals.json), or a CSV/JSON manifest with the columns case_id, image, ecg, note and "
    "vitals. Every file is read in a protected process and de-identified before it is stored; "
    "a file that cannot be read is reported and the others still import. Files imported "
    "before are skipped."
)


class BatchImportDialog(QDialog):
    """Check, import and report a batch of cases (non-modal: the app stays usable)."""

    #: The case ids created or added to, after an import finished or was cancelled.
    imported = Signal(list)

    def __init__(self, services: Any, actor: Actor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.actor = actor
        self.plan: Any = None
        self.report: Any = None
        self.job: JobHandle | None = None
        self.setObjectName("batchImportDialog")
        self.setWindowTitle("Import many cases")
        self.resize(720, 520)

        intro = QLabel(_INTRO)
        intro.setWordWrap(True)
        self.path_edit = QLineEdit()
        self.path_edit.setObjectName("importSource")
        self.path_edit.setPlaceholderText("Folder or manifest (.csv, .json)")
        self.path_edit.setAccessibleName("Import source")
        self.path_edit.returnPressed.connect(self.check)
        folder_button = QPushButton("Folder\u2026")
        folder_button.setToolTip("Choose a folder with one sub-folder per case")
        folder_button.clicked.connect(self._choose_folder)
        manifest_button = QPushButton("Manifest\u2026")
        manifest_button.setToolTip("Choose a CSV or JSON manifest listing the cases")
        manifest_button.clicked.connect(self._choose_manifest)
        source = QHBoxLayout()
        source.addWidget(self.path_edit, 1)
        source.addWidget(folder_button)
        source.addWidget(manifest_button)

        self.summary = QLabel("Choose a source, then Check.")
        self.summary.setObjectName("importSummary")
        self.summary.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setObjectName("importProgress")
        self.progress.setRange(0, 1000)
        self.progress.setAccessibleName("Import progress")
        self.progress.hide()
        self.details = QPlainTextEdit()
        self.details.setObjectName("importDetails")
        self.details.setReadOnly(True)
        self.details.setAccessibleName("Import plan and report")

        self.buttons = QDialogButtonBox()
        self.check_button = self.buttons.addButton("Check", QDialogButtonBox.ButtonRole.ActionRole)
        self.check_button.setToolTip("Read the folder or manifest and list what would be imported")
        self.check_button.clicked.connect(self.check)
        self.import_button = self.buttons.addButton(
            "Import", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.import_button.setObjectName("startImport")
        self.import_button.setEnabled(False)
        self.import_button.clicked.connect(self.start_import)
        self.cancel_button = self.buttons.addButton(
            "Cancel import", QDialogButtonBox.ButtonRole.RejectRole
        )
        self.cancel_button.setObjectName("cancelImport")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_import)
        self.save_button = self.buttons.addButton(
            "Save report\u2026", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self.save_report)
        close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        close_button.clicked.connect(self.close)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(source)
        layout.addWidget(self.summary)
        layout.addWidget(self.progress)
        layout.addWidget(self.details, 1)
        layout.addWidget(self.buttons)

    # -- choosing and checking ------------------------------------------------------------
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of cases", str(Path.home()))
        if folder:
            self.set_source(Path(folder))

    def _choose_manifest(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Manifest of cases", str(Path.home()), "Manifests (*.csv *.json *.jsonl)"
        )
        if path:
            self.set_source(Path(path))

    def set_source(self, path: Path) -> None:
        self.path_edit.setText(str(path))
        self.check()

    def check(self) -> None:
        """Plan the import in the background (no database access): cases, files, problems."""
        from clinic_app.services.batch_import import plan_import

        text = self.path_edit.text().strip()
        if not text:
            return
        source = Path(text).expanduser()
        self.import_button.setEnabled(False)
        self.summary.setText(f"Checking {source}\u2026")

        def done(plan: Any) -> None:
            self.plan = plan
            self.details.setPlainText(_plan_text(plan))
            files = sum(len(case.files) for case in plan.cases)
            self.summary.setText(
                f"{len(plan.cases)} case(s) with {files} file(s) to import"
                + (f"; {len(plan.problems)} problem(s) listed below" if plan.problems else "")
                + "."
            )
            self.import_button.setEnabled(bool(plan.cases))

        def failed(exc: Exception) -> None:
            self.summary.setText("The source could not be read.")
            show_error(self, exc)

        run_in_background(lambda: plan_import(source), done, failed)

    # -- importing ----------------------------------------------------------------------------
    def start_import(self) -> None:
        from clinic_app.services.batch_import import run_import

        if self.plan is None or self.job is not None:
            return
        plan, services, actor = self.plan, self.services, self.actor
        self.import_button.setEnabled(False)
        self.check_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.show()

        def work(progress: Any, cancel: Any) -> Any:
            return run_import(
                services.cases, services.ingest, actor, plan, progress=progress, cancel=cancel
            )

        self.job = run_job(
            work,
            self._progressed,
            self._finished,
            self._failed,
            pool=QThreadPool.globalInstance(),
        )

    def _progressed(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        self.summary.setText(message)

    def cancel_import(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.summary.setText("Cancelling after the current file\u2026")

    def _finished(self, report: Any) -> None:
        self.job = None
        self.report = report
        self.progress.setValue(1000)
        self.cancel_button.setEnabled(False)
        self.check_button.setEnabled(True)
        self.save_button.setEnabled(True)
        self.details.setPlainText(report.to_text(all_items=True))
        self.summary.setText(_report_headline(report))
        self.imported.emit(list(getattr(report, "case_uids", [])))

    def _failed(self, exc: Exception) -> None:
        self.job = None
        self.cancel_button.setEnabled(False)
        self.check_button.setEnabled(True)
        self.progress.hide()
        if isinstance(exc, Cancelled):
            self.summary.setText("Import cancelled.")
            return
        self.summary.setText(
            "The import stopped with an error; nothing of the failed file was stored."
        )
        show_error(self, exc)

    def save_report(self) -> None:
        from clinic_app.services.batch_import import write_import_report

        if self.report is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the import report", str(Path.home() / "import-report.json"),
            "JSON (*.json)",
        )  # fmt: skip
        if not path:
            return
        run_in_background(
            lambda: write_import_report(self.report, Path(path)),
            lambda _none: self.summary.setText(f"Import report saved to {path}."),
            lambda exc: show_error(self, exc),
        )

    def closeEvent(self, event: Any) -> None:
        if self.job is not None:
            self.job.cancel()  # what was imported stays; the report would say what was not
        super().closeEvent(event)


def _plan_text(plan: Any) -> str:
    lines = [f"{len(plan.cases)} case(s) planned:"]
    for case in plan.cases:
        names = ", ".join(Path(str(f)).name for f in case.files) or "no files"
        lines.append(f"  \u2022 {case.case_id}: {names}")
    if plan.problems:
        lines.append("")
        lines.append(f"{len(plan.problems)} problem(s) (these rows are not imported):")
        lines.extend(f"  \u2022 {problem}" for problem in plan.problems)
    return "\n".join(lines)


def _report_headline(report: Any) -> str:
    state = "cancelled" if report.cancelled else "finished"
    counts = report.counts
    parts = ", ".join(f"{value} {key.replace('_', ' ')}" for key, value in counts.items() if value)
    return f"Import {state}: {parts or 'nothing to do'}. Every file is listed below."
