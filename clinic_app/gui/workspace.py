"""The case workspace: one view with every modality of a case, the analysis and the decision.

A QMainWindow of its own inside the main window's stack: the slide viewer is the central
widget; the ECG, note, vitals, results and decision panels are docks the clinician can move,
and their arrangement is remembered. Every read and write goes through the services on a
worker (``gui.workers``); this class only moves plain domain objects into the views.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolBar,
    QWidget,
)

from clinic_app.domain.cases import CaseDetail, NoteInfo
from clinic_app.domain.errors import AccessDenied, ClinicError
from clinic_app.domain.explanations import AnalysisExplanation
from clinic_app.domain.records import DecisionAction
from clinic_app.gui.decision_panel import DecisionPanel
from clinic_app.gui.dialogs import show_error
from clinic_app.gui.ecg.viewer import FIT_PAGE
from clinic_app.gui.ecg_viewer import EcgViewer
from clinic_app.gui.note_editor import NoteEditor
from clinic_app.gui.results_panel import ResultsPanel
from clinic_app.gui.slide_viewer import SlideViewer
from clinic_app.gui.vitals_form import VitalsForm
from clinic_app.gui.workers import JobHandle, run_db_write, run_in_background, run_job
from clinic_app.services.app_services import AppServices
from clinic_app.services.context import Actor
from clinic_app.services.demo_cases import DEMO_TITLE_MARK

log = logging.getLogger(__name__)

COMPOSITE_NOTICE = (
    "Composite demo case: its slide, ECG and note come from different real people "
    "(public data), not from one patient."
)


class CaseWorkspace(QMainWindow):
    """Slide, ECG, note, vitals, results and decision of one case."""

    #: The case changed in the store (analysed, decided, signed...): the list should refresh.
    caseChanged = Signal(str)
    statusMessage = Signal(str)
    modelCardRequested = Signal()
    closeRequested = Signal()
    #: Every view shows the current case record (emitted after the staged update).
    viewsUpdated = Signal()

    def __init__(self, services: AppServices, actor: Actor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("caseWorkspace")
        self.setWindowFlags(Qt.WindowType.Widget)
        self.setDockNestingEnabled(True)
        self.services = services
        self.actor = actor
        self.detail: CaseDetail | None = None
        self.explanation: AnalysisExplanation | None = None
        self.job: JobHandle | None = None
        self._slide: Any = None
        self._load_generation = 0
        self._stage_generation = 0
        #: Called with (case_uid, paths) to import dropped files (the main window owns imports).
        self.import_files: Callable[[str | None, list[Path]], None] | None = None

        self.slide_viewer = SlideViewer()
        self.slide_viewer.setObjectName("slideViewer")
        self.setCentralWidget(self.slide_viewer)
        self.ecg_viewer = EcgViewer()
        self.ecg_viewer.setObjectName("ecgViewer")
        self.note_editor = NoteEditor()
        self.note_editor.setObjectName("noteEditor")
        self.vitals_form = VitalsForm()
        self.vitals_form.setObjectName("vitalsForm")
        self.results_panel = ResultsPanel()
        self.results_panel.setObjectName("resultsPanel")
        self.decision_panel = DecisionPanel(username=actor.username)
        self.decision_panel.setObjectName("decisionPanel")

        self.ecg_dock = self._dock("ECG", self.ecg_viewer, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.results_dock = self._dock(
            "Suggestions", self.results_panel, Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.decision_dock = self._dock(
            "Decision", self.decision_panel, Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.note_dock = self._dock("Note", self.note_editor, Qt.DockWidgetArea.RightDockWidgetArea)
        self.vitals_dock = self._dock(
            "Vitals", self.vitals_form, Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.tabifyDockWidget(self.results_dock, self.decision_dock)
        self.tabifyDockWidget(self.note_dock, self.vitals_dock)
        self.results_dock.raise_()
        self.note_dock.raise_()
        self.ecg_viewer.setMinimumHeight(220)
        # The whole 12-lead page at a glance in the dock; Fit width or true size on demand.
        fit_page = self.ecg_viewer.zoom_combo.findData(FIT_PAGE)
        if fit_page >= 0:
            self.ecg_viewer.zoom_combo.setCurrentIndex(fit_page)
        self._sized = False

        self._build_header()
        self._wire()

    # -- layout ---------------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock{title.replace(' ', '')}")
        if widget.minimumSizeHint().height() > 240:
            # Tall forms scroll inside their dock, so the window still fits a laptop screen.
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QScrollArea.Shape.NoFrame)
            scroll.setWidget(widget)
            dock.setWidget(scroll)
        else:
            dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(area, dock)
        return dock

    def _build_header(self) -> None:
        bar = QToolBar("Case", self)
        bar.setObjectName("caseToolbar")
        bar.setMovable(False)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        self.back_action = QAction("\u2190 Case list", self)
        self.back_action.setShortcut(QKeySequence("Alt+Left"))
        self.back_action.setToolTip("Back to the case list (Alt+Left)")
        self.back_action.triggered.connect(self.closeRequested)
        bar.addAction(self.back_action)
        self.title_label = QLabel()
        self.title_label.setObjectName("caseTitle")
        self.title_label.setTextFormat(Qt.TextFormat.RichText)
        self.title_label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.composite_badge = QLabel("Composite demo case")
        self.composite_badge.setObjectName("compositeBadge")
        self.composite_badge.setToolTip(COMPOSITE_NOTICE)
        self.composite_badge.setAccessibleName("Composite demo case")
        self.composite_badge.setStyleSheet(
            "QLabel#compositeBadge { background: #6f42c1; color: white; border-radius: 4px;"
            " padding: 2px 8px; font-weight: 600; }"
        )
        self.composite_badge.hide()
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(8, 0, 8, 0)
        row.addWidget(self.title_label, 1)
        row.addWidget(self.composite_badge)
        bar.addWidget(box)

        self.progress = QProgressBar()
        self.progress.setObjectName("analysisProgress")
        self.progress.setAccessibleName("Analysis progress")
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(260)
        self.progress.setTextVisible(True)
        self.progress.hide()
        bar.addWidget(self.progress)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelAnalysis")
        self.cancel_button.setAccessibleName("Cancel the analysis")
        self.cancel_button.setToolTip("Stop the running analysis; nothing is stored")
        self.cancel_button.clicked.connect(self.cancel_analysis)
        self.cancel_button.hide()
        bar.addWidget(self.cancel_button)

        self.analyse_action = QAction("Analyse", self)
        self.analyse_action.setObjectName("analyseAction")
        self.analyse_action.setShortcut(QKeySequence("Ctrl+R"))
        self.analyse_action.setToolTip(
            "Run the model on this case's slide, ECG, note and vitals (Ctrl+R)"
        )
        self.analyse_action.triggered.connect(self.analyse)
        bar.addAction(self.analyse_action)
        # Esc cancels only while an analysis runs (a disabled action leaves Esc to the views).
        self.cancel_action = QAction("&Cancel analysis", self)
        self.cancel_action.setShortcut(QKeySequence("Esc"))
        self.cancel_action.setEnabled(False)
        self.cancel_action.triggered.connect(self.cancel_analysis)
        self.addAction(self.cancel_action)
        self.report_action = QAction("Export &report\u2026", self)
        self.report_action.setObjectName("exportReportAction")
        self.report_action.setShortcut(QKeySequence("Ctrl+E"))
        self.report_action.setToolTip(
            "Export this case's explanation report as PDF, DICOM or FHIR (Ctrl+E)"
        )
        self.report_action.setEnabled(False)
        self.report_action.triggered.connect(self.export_report)
        bar.addAction(self.report_action)
        analyse_button = bar.widgetForAction(self.analyse_action)
        if analyse_button is not None:
            analyse_button.setObjectName("analyseButton")
            analyse_button.setAccessibleName("Analyse this case")

    def _wire(self) -> None:
        self.note_editor.saveRequested.connect(self.save_note)
        self.vitals_form.saveRequested.connect(self.save_vitals)
        self.decision_panel.decisionRequested.connect(self.decide)
        self.decision_panel.signRequested.connect(self.sign)
        self.decision_panel.amendRequested.connect(self.amend)
        self.results_panel.modelCardRequested.connect(self.modelCardRequested)
        self.results_panel.suggestionSelected.connect(self._select_suggestion)
        if hasattr(self.results_panel, "tileRequested"):
            self.results_panel.tileRequested.connect(self.slide_viewer.zoom_to_tile)

    def shortcuts(self) -> list[tuple[str, str]]:
        """The workspace's own shortcuts and those of its views (listed in Help)."""
        own = [
            ("Ctrl+R", "Analyse the open case"),
            ("Esc", "Cancel a running analysis"),
            ("Alt+Left", "Back to the case list"),
            ("Ctrl+E", "Export the case's explanation report"),
        ]
        for view in (
            self.slide_viewer,
            self.ecg_viewer,
            self.note_editor,
            self.vitals_form,
            self.results_panel,
            self.decision_panel,
        ):
            own.extend(view.shortcuts())
        return own

    # -- loading --------------------------------------------------------------------------
    @property
    def case_uid(self) -> str | None:
        return self.detail.summary.case_uid if self.detail else None

    def open_case(self, case_uid: str) -> None:
        """Load the case and its inputs in the background, then fill every view."""
        from clinic_app.services.case_analysis import load_case_views

        self._load_generation += 1
        generation = self._load_generation
        self.statusMessage.emit(f"Opening case {case_uid}\u2026")
        services, actor = self.services, self.actor

        def load() -> tuple[CaseDetail, Any]:
            detail = services.cases.get_case(actor, case_uid)
            views = load_case_views(services.cases, actor, case_uid)
            return detail, views

        def done(result: tuple[CaseDetail, Any]) -> None:
            if generation != self._load_generation:
                _close_views(result[1])
                return
            self._show(*result)

        run_in_background(load, done, self._error)

    def reload(self) -> None:
        """Refresh the case record (after a write) without re-reading the input files."""
        uid = self.case_uid
        if uid is None:
            return
        services, actor = self.services, self.actor
        run_in_background(
            lambda: services.cases.get_case(actor, uid), self._show_detail, self._error
        )

    def _show(self, detail: CaseDetail, views: Any) -> None:
        self.close_inputs()
        self._slide = getattr(views, "slide", None)
        slide_info = getattr(views, "slide_input", None)
        self.slide_viewer.set_slide(
            self._slide, slide_info.original_name if slide_info is not None else ""
        )
        recording = getattr(views, "ecg", None)
        ecg_info = getattr(views, "ecg_input", None)
        self.ecg_viewer.set_recording(
            recording, ecg_info.original_name if ecg_info is not None else ""
        )
        self.note_editor.set_versions(list(detail.notes))
        self._show_detail(detail)
        self.statusMessage.emit(f"Case {detail.summary.case_uid} opened")

    def _show_detail(self, detail: CaseDetail) -> None:
        """Fill the views from the case record, one view per turn of the event loop.

        Building the suggestion cards, the heatmap overlay, the ECG shading and the note
        highlights each costs tens of milliseconds of layout and painting; done in one go they
        froze the window for ~80 ms (measured), so each gets its own turn."""
        self.detail = detail
        self._stage_generation += 1
        summary = detail.summary
        read_only = summary.status.read_only
        shown_title = summary.title or "Untitled case"
        if summary.is_composite_demo:  # the badge says it; the title need not repeat it
            shown_title = shown_title.removeprefix(f"{DEMO_TITLE_MARK} \u2014 ")
        self.title_label.setText(
            f"<b>{html.escape(summary.case_uid)}</b> v{summary.version} \u00b7 "
            f"patient {html.escape(summary.patient_pseudonym)} \u00b7 "
            f"{html.escape(shown_title)} \u00b7 "
            f"<i>{html.escape(summary.status.value.replace('_', ' '))}</i>"
        )
        self.composite_badge.setVisible(summary.is_composite_demo)
        self.analyse_action.setEnabled(not read_only and self.job is None)
        self.report_action.setEnabled(True)
        analysis = detail.latest_analysis
        self.explanation = AnalysisExplanation.from_outputs(analysis.outputs) if analysis else None
        explanation = self.explanation
        label = explanation.label_display if explanation else ""
        self._run_stages(
            [
                lambda: self.note_editor.set_note(detail.latest_note, read_only),
                lambda: self.decision_panel.set_case(detail),
                lambda: self.vitals_form.set_case(detail, read_only),
                lambda: self.results_panel.set_analysis(
                    analysis, explanation, summary.is_composite_demo
                ),
                lambda: self.slide_viewer.set_heatmap(explanation.slide if explanation else None),
                lambda: self.ecg_viewer.set_relevance(
                    explanation.ecg if explanation else None, label
                ),
                lambda: self.ecg_viewer.set_measurements(
                    explanation.ecg_measurements if explanation else None
                ),
                lambda: self.note_editor.set_highlights(
                    explanation.note if explanation else None, label
                ),
            ]
        )

    def _run_stages(self, stages: list[Callable[[], object]]) -> None:
        """Run ``stages`` one per event-loop turn; a newer case record cancels the rest."""
        generation = self._stage_generation

        def step(index: int) -> None:
            if generation != self._stage_generation or index >= len(stages):
                if index >= len(stages):
                    self.viewsUpdated.emit()
                return
            stages[index]()
            QTimer.singleShot(0, lambda: step(index + 1))

        step(0)

    def _select_suggestion(self, suggestion_id: int) -> None:
        self.decision_panel.select_suggestion(suggestion_id)
        self.decision_dock.raise_()

    def close_inputs(self) -> None:
        """Release the open slide (file handles) when the case is closed or replaced."""
        slide, self._slide = self._slide, None
        self.slide_viewer.set_slide(None)
        if slide is not None:
            try:
                slide.close()
            except Exception:  # closing must never take the window down
                log.exception("Closing a slide failed")

    def clear(self) -> None:
        self.cancel_analysis()
        self._load_generation += 1
        self.close_inputs()
        self.ecg_viewer.set_recording(None)
        self.detail = None
        self.explanation = None
        self.report_action.setEnabled(False)

    # -- reports ------------------------------------------------------------------------------
    def export_report(self) -> QWidget | None:
        """Open the export dialog for the open case (non-modal; exports run in the background)."""
        from clinic_app.gui.report_dialog import ReportExportDialog

        uid = self.case_uid
        if uid is None:
            return None
        folder = self.services.settings.exports_dir / "reports"
        dialog = ReportExportDialog(self.services, self.actor, uid, folder, parent=self)
        dialog.exported.connect(
            lambda paths: self.statusMessage.emit(f"Report exported: {len(paths)} file(s)")
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    # -- analysis ---------------------------------------------------------------------------
    def analyse(self) -> None:
        """Run the model on the case in the inference worker, with progress and cancel."""
        uid = self.case_uid
        if uid is None or self.job is not None:
            return
        if self.note_editor.is_dirty():
            self.statusMessage.emit("The note has unsaved changes: the last saved version is used.")
        from clinic_app.services.case_analysis import analyse_case
        from clinic_app.services.model_host import model_host

        services, actor = self.services, self.actor
        device = str(getattr(services.settings, "device", "auto") or "auto")
        self.analyse_action.setEnabled(False)
        self.progress.setValue(0)
        self.progress.setFormat("Starting\u2026")
        self.progress.show()
        self.cancel_button.show()
        self.cancel_action.setEnabled(True)

        def work(progress: Callable[[float, str], None], cancel: Callable[[], bool]) -> Any:
            return analyse_case(
                services.cases,
                services.settings,
                actor,
                uid,
                device=device,
                progress=progress,
                cancel=cancel,
                host=model_host(),
            )

        self.job = run_job(work, self._progress, self._analysed, self._analysis_failed)

    def cancel_analysis(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.progress.setFormat("Cancelling\u2026")
            self.cancel_button.setEnabled(False)

    def _progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        self.progress.setFormat(f"{message} %p%")
        self.statusMessage.emit(message)

    def _finish_job(self) -> None:
        self.job = None
        self.cancel_action.setEnabled(False)
        self.progress.hide()
        self.cancel_button.hide()
        self.cancel_button.setEnabled(True)
        read_only = bool(self.detail and self.detail.summary.status.read_only)
        self.analyse_action.setEnabled(not read_only)

    def _analysed(self, analysis: Any) -> None:
        self._finish_job()
        if self.case_uid is None:
            return
        self.statusMessage.emit(
            f"Analysis finished: {analysis.model_name} {analysis.model_version}"
        )
        self.results_dock.raise_()
        self.caseChanged.emit(self.case_uid)
        self.reload()

    def _analysis_failed(self, exc: Exception) -> None:
        self._finish_job()
        from clinic_app.domain.errors import Cancelled

        if isinstance(exc, Cancelled):
            self.statusMessage.emit(str(exc))
            return
        self._error(exc)

    # -- writes -----------------------------------------------------------------------------
    def _write(self, fn: Callable[[], Any], done: Callable[[Any], None] | None = None) -> None:
        uid = self.case_uid

        def finished(value: Any) -> None:
            if done is not None:
                done(value)
            if uid is not None:
                self.caseChanged.emit(uid)
            self.reload()

        run_db_write(fn, finished, self._error)

    def save_note(self, text: str) -> None:
        uid = self.case_uid
        if uid is None:
            return
        services, actor = self.services, self.actor

        def saved(result: Any) -> None:
            note: NoteInfo | None = result.note
            if note is not None:
                self.note_editor.show_saved(note)
                self.statusMessage.emit(f"Note saved as version {note.version}")

        self._write(lambda: services.ingest.save_typed_note(actor, uid, text), saved)

    def save_vitals(self, values: dict[str, str]) -> None:
        uid = self.case_uid
        if uid is None:
            return
        from clinic_app.services.vitals import VitalsInputError, record_vitals

        services, actor = self.services, self.actor

        def saved(_id: Any) -> None:
            self.vitals_form.clear_entry()
            self.statusMessage.emit("Vital signs saved")
            self.caseChanged.emit(uid)
            self.reload()

        def failed(exc: Exception) -> None:
            if isinstance(exc, VitalsInputError):
                self.vitals_form.show_errors({k: str(e) for k, e in exc.field_errors.items()})
            else:
                self._error(exc)

        run_db_write(lambda: record_vitals(services.cases, actor, uid, values), saved, failed)

    def decide(
        self,
        suggestion_id: int,
        action: DecisionAction,
        reason: str | None,
        override: tuple[str, str, str] | None,
    ) -> None:
        uid = self.case_uid
        if uid is None:
            return
        services, actor = self.services, self.actor
        self._write(
            lambda: services.cases.decide(
                actor, uid, suggestion_id, action, reason=reason, override=override
            ),
            lambda _d: self.statusMessage.emit(f"Decision recorded: {action.value}"),
        )

    def sign(self, final_impression: str, password: str) -> None:
        """Re-check the clinician's password, then sign (both audited by the services)."""
        uid = self.case_uid
        if uid is None:
            return
        from clinic_app.services.users import authenticate

        services, actor = self.services, self.actor

        def work() -> Any:
            confirmed = authenticate(services.database, actor.username, password)
            if confirmed.user_id != actor.user_id:
                raise AccessDenied("The password does not belong to the signed-in user.")
            return services.cases.sign(actor, uid, final_impression)

        self._write(work, lambda _s: self.statusMessage.emit(f"Case {uid} signed"))

    def amend(self, reason: str) -> None:
        uid = self.case_uid
        if uid is None:
            return
        services, actor = self.services, self.actor
        self._write(
            lambda: services.cases.amend(actor, uid, reason),
            lambda summary: self.statusMessage.emit(
                f"Case {uid} amended: version {summary.version} is open for changes"
            ),
        )

    def _error(self, exc: Exception) -> None:
        if not isinstance(exc, ClinicError):
            log.error("Workspace action failed", exc_info=exc)
        show_error(self, exc)

    # -- layout memory ------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._sized:
            # Default proportions once the window has its size: the ECG strip gets about 40 %
            # of the height, the suggestions/note column about a third of the width.
            self._sized = True
            self.resizeDocks(
                [self.ecg_dock], [max(260, int(self.height() * 0.4))], Qt.Orientation.Vertical
            )
            self.resizeDocks(
                [self.results_dock, self.note_dock],
                [max(420, int(self.width() * 0.34))] * 2,
                Qt.Orientation.Horizontal,
            )
            column = int(self.height() * 0.6)  # above the ECG: suggestions get the larger part
            self.resizeDocks(
                [self.results_dock, self.note_dock],
                [int(column * 0.6), int(column * 0.4)],
                Qt.Orientation.Vertical,
            )

    def layout_state(self) -> QByteArray:
        return self.saveState()

    def restore_layout(self, state: QByteArray) -> bool:
        restored = bool(self.restoreState(state))
        self._sized = self._sized or restored
        return restored


def _close_views(views: Any) -> None:
    slide = getattr(views, "slide", None)
    if slide is not None:
        slide.close()
