"""The main window: intended-use banner, case list and case workspace, menus and status bar.

Signed in, the window shows the case list and, for an open case, the workspace (a stack of
two pages). Without a session (``actor`` None, e.g. the system-check path) it shows this
installation's state only. Heavy libraries (torch, monai, transformers) and the model load in
the background after the window is shown; the status bar says when the model is ready.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QUrl, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from clinic_app._version import __version__
from clinic_app.config.settings import Settings
from clinic_app.domain.errors import ClinicError
from clinic_app.domain.intended_use import INTENDED_USE, INTENDED_USE_SHORT
from clinic_app.domain.permissions import Permission
from clinic_app.gui.dialogs import AboutDialog, SystemCheckDialog, show_error
from clinic_app.gui.workers import run_db_write, run_in_background
from clinic_app.services.context import Actor
from clinic_app.services.diagnostics import Check, quick_checks
from clinic_app.storage.engine import Database

log = logging.getLogger(__name__)

_BANNER_STYLE = (
    "QLabel#intendedUseBanner { background: #fff3cd; color: #664d03; "
    "border-bottom: 1px solid #e0c36a; padding: 6px 12px; font-weight: 600; }"
)
_STATUS_COLOURS = {"ok": "#1e7b34", "warn": "#8a6100", "fail": "#b02a37"}
_LIST_PAGE, _CASE_PAGE = 0, 1


class MainWindow(QMainWindow):
    """Top-level window of a signed-in session (or of the installation check without one)."""

    #: Emitted when the model finished loading in the background (text for the status bar).
    modelReady = Signal(str)

    def __init__(
        self,
        settings: Settings,
        database: Database | None = None,
        actor: Actor | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.database = database
        self.actor = actor
        self.services: Any = None
        self.signed_out = False
        self.import_report: QMessageBox | None = None
        self.model_state = "idle"  # idle | loading | ready | failed
        self.setWindowTitle(f"ClinicFusion {__version__} \u2014 research use only")
        self._fit_to_screen()
        self._dialogs: list[QWidget] = []

        self.banner = QLabel(INTENDED_USE_SHORT)
        self.banner.setObjectName("intendedUseBanner")
        self.banner.setStyleSheet(_BANNER_STYLE)
        self.banner.setWordWrap(True)
        self.banner.setToolTip(INTENDED_USE)
        self.banner.setAccessibleName("Intended use")

        self.installation_form = QFormLayout()
        self.stack = QStackedWidget()
        self.stack.setObjectName("mainStack")
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(self.banner)
        outer.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.case_list: Any = None
        self.workspace: Any = None
        self.worklist: Any = None
        self._worklist_pending = False
        if database is not None and actor is not None:
            self._build_session(database, actor)
        else:
            self.stack.addWidget(self._build_home())

        self._build_menus()
        self.intended_use_label = QLabel(INTENDED_USE_SHORT)
        self.intended_use_label.setObjectName("intendedUseStatus")
        self.model_label = QLabel()
        self.model_label.setObjectName("modelStatus")
        self.model_label.setAccessibleName("Model status")
        self.statusBar().addPermanentWidget(self.model_label)
        self.statusBar().addPermanentWidget(self.intended_use_label)
        if actor is not None:
            user = QLabel(f"Signed in: {html.escape(actor.username)} ({actor.role.value})")
            user.setObjectName("signedInUser")
            self.statusBar().addPermanentWidget(user)
        self.statusBar().showMessage("Ready", 5000)
        self.refresh_installation()
        self._restore_layout()

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
        layout.addStretch(1)
        return home

    def _build_session(self, database: Database, actor: Actor) -> None:
        from clinic_app.gui.case_list import CaseListView
        from clinic_app.gui.workspace import CaseWorkspace
        from clinic_app.services.app_services import AppServices

        self.services = AppServices.create(self.settings, database)
        if not self._can(Permission.CASE_READ):
            # Administrators run the installation but do not read cases (separation of duties).
            self.stack.addWidget(self._build_admin_home())
            return
        self.case_list = CaseListView(self.services.cases, actor)
        self.case_list.setObjectName("caseList")
        self.case_list.caseActivated.connect(self.open_case)
        self.case_list.filesDropped.connect(self.import_files)
        if hasattr(self.case_list, "newCaseRequested"):
            self.case_list.newCaseRequested.connect(self.create_case)
        self.workspace = CaseWorkspace(self.services, actor)
        self.workspace.caseChanged.connect(lambda _uid: self._refresh_list())
        self.workspace.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.workspace.modelCardRequested.connect(self.show_model_card)
        self.workspace.closeRequested.connect(self.show_case_list)
        self.workspace.import_files = self.import_files
        # The home page: all cases, and the triage worklist (built when first shown: it needs
        # the bundle's critical labels, which take a verification of the bundle to read).
        self.home_tabs = QTabWidget()
        self.home_tabs.setObjectName("homeTabs")
        self.home_tabs.setDocumentMode(True)
        self.home_tabs.addTab(self.case_list, "All cases")
        self.worklist_holder = QWidget()
        self.worklist_holder.setObjectName("worklistHolder")
        self.worklist_layout = QVBoxLayout(self.worklist_holder)
        self.worklist_layout.setContentsMargins(0, 0, 0, 0)
        self.home_tabs.addTab(self.worklist_holder, "Triage worklist")
        self.home_tabs.setTabToolTip(
            1, "Analysed cases by risk or uncertainty, for fast keyboard review (Ctrl+T)"
        )
        self.home_tabs.currentChanged.connect(self._home_tab_changed)
        self.stack.addWidget(self.home_tabs)
        self.stack.addWidget(self.workspace)
        self.setAcceptDrops(True)

    def _home_tab_changed(self, index: int) -> None:
        if index == 1:
            self._ensure_worklist()
            if self.worklist is not None:
                self.worklist.setFocus()
        elif self.case_list is not None:
            self.case_list.setFocus()

    def _ensure_worklist(self) -> None:
        """Build the worklist once; its service is made in the background first."""
        if self.worklist is not None or self._worklist_pending or self.services is None:
            return
        from clinic_app.services.analysis import resolve_bundle
        from clinic_app.services.model_bundles import critical_codes

        settings = self.settings
        self._worklist_pending = True
        layout = self.worklist_layout
        waiting = QLabel("Opening the triage worklist\u2026")
        waiting.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(waiting)

        cases = self.services.cases

        def make_service() -> Any:
            """Off the GUI thread: reading the critical labels verifies the bundle, and the
            service's first creation after an upgrade fills the triage figures (seconds)."""
            from clinic_app.services.worklist import WorklistService

            found: frozenset[str] = frozenset()
            try:
                found = critical_codes(resolve_bundle(settings, None))
            except ClinicError as exc:
                # Without the bundle the worklist still ranks analyses by their stored flags.
                log.warning("Critical labels unavailable for the worklist: %s", exc)
            return WorklistService(cases, critical_codes=found)

        def build(service: Any) -> None:
            from clinic_app.gui.worklist import WorklistView

            self._worklist_pending = False
            waiting.deleteLater()
            if self.actor is None or self.services is None:
                return
            self.worklist = WorklistView(service, self.actor)
            self.worklist.openCase.connect(self.open_case)
            # Only the case list: the worklist updated its own row and moved to the next case
            # (refreshing it here would re-select the case just decided).
            self.worklist.caseChanged.connect(lambda _uid: self.case_list.refresh())
            self.worklist.statusMessage.connect(
                lambda text: self.statusBar().showMessage(text, 8000)
            )
            layout.addWidget(self.worklist)
            if self.home_tabs.currentIndex() == 1:
                self.worklist.setFocus()

        def failed(exc: Exception) -> None:
            self._worklist_pending = False
            waiting.setText("The triage worklist could not be opened.")
            show_error(self, exc)

        run_in_background(make_service, build, failed)

    def show_worklist(self) -> None:
        if self.case_list is None:
            return
        if self.workspace is not None:
            self.workspace.clear()
        self.stack.setCurrentIndex(_LIST_PAGE)
        self.home_tabs.setCurrentIndex(1)
        self._ensure_worklist()

    def _build_admin_home(self) -> QWidget:
        home = self._build_home()
        layout = home.layout()
        assert isinstance(layout, QVBoxLayout)
        note = QLabel(
            "<h3>Administration</h3><p>Administrators manage this installation: accounts and "
            "roles, the audit trail and privacy-protected statistics. Cases are opened by "
            "clinicians and reviewers: create their accounts under <b>Admin → Users and "
            "roles</b>.</p>"
        )
        note.setObjectName("adminHome")
        note.setWordWrap(True)
        buttons = QHBoxLayout()
        for text, slot in (
            ("Users and roles…", self.show_users),
            ("Audit log…", self.show_audit_log),
            ("Privacy statistics…", self.show_privacy_stats),
        ):
            button = QPushButton(text)
            button.setAccessibleName(text.rstrip("…"))
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout.insertWidget(layout.count() - 1, note)
        layout.insertLayout(layout.count() - 1, buttons)
        return home

    def _action(
        self,
        menu: Any,
        text: str,
        slot: Any,
        shortcut: str | QKeySequence | QKeySequence.StandardKey | None = None,
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        signed_in = self.actor is not None and self.services is not None
        cases = signed_in and self.workspace is not None
        file_menu = self.menuBar().addMenu("&File")
        if cases:
            self._action(file_menu, "&New case\u2026", self.create_case_dialog, "Ctrl+N")
            self._action(file_menu, "&Import files into case\u2026", self.import_dialog, "Ctrl+I")
            self._action(
                file_menu, "Import &many cases\u2026", self.batch_import_dialog, "Ctrl+Shift+I"
            )
            file_menu.addSeparator()
        self._action(file_menu, "Open &data folder", self.open_data_folder)
        file_menu.addSeparator()
        if signed_in:
            self._action(file_menu, "Sign &out", self.sign_out, "Ctrl+Shift+Q")
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        if cases:
            case_menu = self.menuBar().addMenu("&Case")
            case_menu.addAction(self.workspace.analyse_action)
            case_menu.addAction(self.workspace.cancel_action)
            case_menu.addAction(self.workspace.report_action)
            case_menu.addSeparator()
            self._action(case_menu, "Back to case &list", self.show_case_list, "Ctrl+L")
            self._action(case_menu, "&Triage worklist", self.show_worklist, "Ctrl+T")
            if self._can(Permission.CASE_ANALYSE):
                self._action(
                    case_menu, "&Batch analysis\u2026", self.batch_analysis_dialog, "Ctrl+Shift+B"
                )
            self._action(case_menu, "&Refresh case list", self.case_list.refresh, "F5")
            view_menu = self.menuBar().addMenu("&View")
            for dock in (
                self.workspace.ecg_dock,
                self.workspace.results_dock,
                self.workspace.decision_dock,
                self.workspace.note_dock,
                self.workspace.vitals_dock,
            ):
                view_menu.addAction(dock.toggleViewAction())
            view_menu.addSeparator()
            self._action(view_menu, "&Reset workspace layout", self.reset_layout)
        if signed_in and self._can(Permission.AUDIT_VIEW):
            admin_menu = self.menuBar().addMenu("&Admin")
            self._action(admin_menu, "&Audit log\u2026", self.show_audit_log, "Ctrl+Shift+A")
            if self._can(Permission.STATS_RELEASE):
                self._action(admin_menu, "&Privacy statistics\u2026", self.show_privacy_stats)
            if self._can(Permission.USERS_MANAGE):
                self._action(admin_menu, "&Users and roles\u2026", self.show_users)

        tools_menu = self.menuBar().addMenu("&Tools")
        if signed_in:
            self._action(tools_menu, "&Settings\u2026", self.show_settings, "Ctrl+,")
        self._action(tools_menu, "&System check\u2026", self.show_system_check)

        help_menu = self.menuBar().addMenu("&Help")
        if signed_in:
            self._action(help_menu, "&Keyboard shortcuts", self.show_shortcuts, "F1")
            self._action(help_menu, "&Model card", self.show_model_card)
        self._action(help_menu, "&Intended use", self.show_intended_use)
        self._action(help_menu, "&About ClinicFusion", self.show_about)
        self._action(help_menu, "About &Qt", QApplication.aboutQt)

    def _can(self, permission: Permission) -> bool:
        from clinic_app.domain.permissions import allowed

        return self.actor is not None and allowed(self.actor.role, permission)

    def _fit_to_screen(self) -> None:
        """A first-run size that fits the screen (the remembered geometry replaces it later)."""
        screen = QApplication.primaryScreen()
        if screen is None:
            self.resize(1440, 900)
            return
        available = screen.availableGeometry()
        self.resize(
            min(1440, int(available.width() * 0.95)), min(900, int(available.height() * 0.92))
        )

    # -- layout memory ----------------------------------------------------------------------
    def _state_store(self) -> QSettings:
        return QSettings(str(self.settings.data_dir / "gui-state.ini"), QSettings.Format.IniFormat)

    def _restore_layout(self) -> None:
        store = self._state_store()
        geometry = store.value("main/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        workspace_state = store.value("workspace/state")
        if self.workspace is not None and workspace_state is not None:
            self.workspace.restore_layout(workspace_state)

    def save_layout(self) -> None:
        store = self._state_store()
        store.setValue("main/geometry", self.saveGeometry())
        if self.workspace is not None:
            store.setValue("workspace/state", self.workspace.layout_state())
        store.sync()

    def reset_layout(self) -> None:
        store = self._state_store()
        store.remove("workspace/state")
        store.sync()
        self.statusBar().showMessage("The workspace layout is reset at the next start.", 8000)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_layout()
        if self.worklist is not None:
            self.worklist.wait_for_background()
        if self.workspace is not None:
            self.workspace.clear()
        if self.model_state != "idle":
            from clinic_app.services.model_host import shutdown_model_host

            shutdown_model_host()
            self.model_state = "idle"
        super().closeEvent(event)

    # -- cases ---------------------------------------------------------------------------------
    def show_case_list(self) -> None:
        if self.workspace is not None:
            self.workspace.clear()
        self.stack.setCurrentIndex(_LIST_PAGE)
        if self.case_list is not None:
            self.home_tabs.setCurrentIndex(0)
            self.case_list.setFocus()

    def open_case(self, case_uid: str) -> None:
        if self.workspace is None:
            return
        self.stack.setCurrentIndex(_CASE_PAGE)
        self.workspace.open_case(case_uid)

    def create_case(self, values: dict[str, Any]) -> None:
        """Create a case from the New-case dialog's values and open it."""
        services, actor = self.services, self.actor
        if services is None or actor is None:
            return

        def work() -> Any:
            return services.cases.create_case(
                actor,
                title=str(values.get("title") or ""),
                patient_pseudonym=values.get("patient_pseudonym") or None,
                birth_year=values.get("birth_year"),
                sex=values.get("sex") or None,
            )

        def done(summary: Any) -> None:
            self._refresh_list()
            self.open_case(summary.case_uid)

        run_db_write(work, done, lambda exc: show_error(self, exc))

    def _refresh_list(self) -> None:
        if self.case_list is not None:
            self.case_list.refresh()
        if self.worklist is not None:
            self.worklist.refresh()

    def create_case_dialog(self) -> None:
        if self.case_list is not None and hasattr(self.case_list, "new_case"):
            self.case_list.new_case()

    def import_dialog(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        paths, _ = QFileDialog.getOpenFileNames(
            self,
            "Import files into the case",
            str(Path.home()),
            "Case files (*.svs *.tif *.tiff *.ndpi *.dcm *.png *.jpg *.jpeg *.hea *.dat "
            "*.txt *.md);;All files (*)",
        )
        if paths:
            self.import_files(self.workspace.case_uid if self._case_open() else None,
                              [Path(p) for p in paths])  # fmt: skip

    def batch_import_dialog(self) -> QWidget | None:
        """Import many cases from a folder or manifest (non-modal, with progress and cancel)."""
        from clinic_app.gui.batch_import_dialog import BatchImportDialog

        if self.services is None or self.actor is None:
            return None
        dialog = BatchImportDialog(self.services, self.actor, parent=self)
        dialog.imported.connect(lambda _uids: self._refresh_list())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def batch_analysis_dialog(self) -> QWidget | None:
        """Queue and watch batch analysis (the worker runs in a process of its own)."""
        from clinic_app.gui.batch_panel import BatchAnalysisDialog

        if self.services is None or self.actor is None:
            return None
        dialog = BatchAnalysisDialog(self.services, self.actor, parent=self)
        dialog.casesAnalysed.connect(self._refresh_list)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def _case_open(self) -> bool:
        return self.stack.currentIndex() == _CASE_PAGE and self.workspace.case_uid is not None

    def import_files(self, case_uid: str | None, paths: list[Path]) -> None:
        """Import files into a case (a new one when ``case_uid`` is None), one at a time.

        Each file is read, checked and de-identified by the ingest service before anything is
        stored; a bad file is reported by name and the others still go in."""
        services, actor = self.services, self.actor
        if services is None or actor is None or not paths:
            return
        self.statusBar().showMessage(f"Importing {len(paths)} file(s)\u2026")

        def work() -> tuple[str, list[str], list[tuple[str, str]]]:
            uid = case_uid
            if uid is None:
                uid = services.cases.create_case(actor, title=f"Imported {paths[0].name}").case_uid
            done: list[str] = []
            failed: list[tuple[str, str]] = []
            for path in paths:
                try:
                    services.ingest.import_file(actor, uid, path)
                except ClinicError as exc:
                    failed.append((path.name, str(exc)))
                else:
                    done.append(path.name)
            return uid, done, failed

        def finished(result: tuple[str, list[str], list[tuple[str, str]]]) -> None:
            uid, done, failed = result
            self._refresh_list()
            self.statusBar().showMessage(f"Imported {len(done)} file(s) into case {uid}", 8000)
            if failed:
                lines = "\n".join(f"\u2022 {name}: {why}" for name, why in failed)
                box = QMessageBox(
                    QMessageBox.Icon.Warning,
                    "Some files were not imported",
                    f"{len(failed)} file(s) could not be imported into case {uid}; nothing "
                    f"of them was stored:\n\n{lines}",
                    parent=self,
                )
                box.setObjectName("importErrors")
                box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
                box.open()  # window-modal, but the event loop (and other imports) go on
                self.import_report = box
            if self._case_open() and self.workspace.case_uid == uid:
                self.workspace.open_case(uid)
            elif case_uid is None:
                self.open_case(uid)

        run_db_write(work, finished, lambda exc: show_error(self, exc))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.services is not None and event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        self.import_files(self.workspace.case_uid if self._case_open() else None, paths)

    def seed_demo_cases(self) -> None:
        """Add the composite demo cases (first run) in the background, then list them."""
        from clinic_app.services.demo_cases import seed_demo_cases

        services, actor = self.services, self.actor
        if services is None or actor is None:
            return
        self.statusBar().showMessage("Adding the composite demo cases\u2026")

        def done(created: Any) -> None:
            self._refresh_list()
            self.statusBar().showMessage(
                f"Added {len(created)} composite demo case(s): built from public data of "
                "different people, not real patients.",
                10000,
            )

        run_db_write(
            lambda: seed_demo_cases(services.cases, services.ingest, actor),
            done,
            lambda exc: show_error(self, exc),
        )

    # -- model ----------------------------------------------------------------------------------
    def start_model_preload(self) -> None:
        """Import the ML libraries and load the model in the background (status bar shows it)."""
        if self.model_state in ("loading", "ready"):
            return
        settings = self.settings
        device = str(getattr(settings, "device", "auto") or "auto")
        self.model_state = "loading"
        self.model_label.setText("Model: loading in the background\u2026")

        def load() -> str:
            from clinic_app.services.analysis import resolve_bundle
            from clinic_app.services.model_host import model_host

            loaded = model_host().load(resolve_bundle(settings, None), device)
            return f"{loaded.name} {loaded.version} \u00b7 {loaded.device.upper()}"

        def ready(text: str) -> None:
            self.model_state = "ready"
            self.model_label.setText(f"Model ready: {text}")
            self.model_label.setToolTip("The model is loaded; analyses start at once.")
            self.modelReady.emit(text)

        def failed(exc: Exception) -> None:
            self.model_state = "failed"
            self.model_label.setText("Model: not available")
            self.model_label.setToolTip(str(exc))

        from clinic_app.gui.workers import inference_pool

        run_in_background(load, ready, failed, pool=inference_pool())

    def show_model_card(self) -> QDialog | None:
        from clinic_app.services.analysis import resolve_bundle

        try:
            bundle = resolve_bundle(self.settings, None)
            text = (bundle / "model_card.md").read_text(encoding="utf-8")
        except (ClinicError, OSError) as exc:
            show_error(self, exc if isinstance(exc, ClinicError) else ClinicError(str(exc)))
            return None
        dialog = QDialog(self)
        dialog.setWindowTitle(f"Model card \u2014 {bundle.name}")
        dialog.resize(820, 700)
        browser = QTextBrowser()
        browser.setObjectName("modelCardText")
        browser.setMarkdown(text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dialog.reject)
        layout = QVBoxLayout(dialog)
        layout.addWidget(browser)
        layout.addWidget(buttons)
        self._keep(dialog)
        dialog.show()
        return dialog

    # -- admin and settings -------------------------------------------------------------------
    def show_audit_log(self) -> QWidget | None:
        from clinic_app.gui.admin import AuditViewerDialog

        if self.database is None or self.actor is None:
            return None
        dialog = AuditViewerDialog(self.database, self.actor, self)
        self._keep(dialog)
        dialog.show()
        return dialog

    def show_privacy_stats(self) -> QWidget | None:
        from clinic_app.gui.admin import PrivacyStatsDialog

        if self.database is None or self.actor is None:
            return None
        dialog = PrivacyStatsDialog(self.database, self.actor, self)
        self._keep(dialog)
        dialog.show()
        return dialog

    def show_users(self) -> QWidget | None:
        from clinic_app.gui.admin import UsersDialog

        if self.database is None or self.actor is None:
            return None
        dialog = UsersDialog(self.database, self.actor, self)
        self._keep(dialog)
        dialog.show()
        return dialog

    def show_settings(self) -> QWidget:
        from clinic_app.gui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, self, database=self.database, actor=self.actor)
        dialog.settingsChanged.connect(self._settings_changed)
        self._keep(dialog)
        dialog.show()
        return dialog

    def _settings_changed(self, settings: Settings) -> None:
        from clinic_app.gui.theme import apply_theme

        self.settings = settings
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, str(getattr(settings, "theme", "system")))
        self.statusBar().showMessage("Settings saved", 5000)

    def all_shortcuts(self) -> list[tuple[str, str]]:
        """Every keyboard shortcut: menu actions and the views' own (for Help)."""
        seen: list[tuple[str, str]] = []
        for menu_action in self.menuBar().actions():
            menu = menu_action.menu()
            if not isinstance(menu, QMenu):
                continue
            for action in menu.actions():
                key = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
                if key:
                    seen.append((key, action.text().replace("&", "").rstrip("\u2026")))
        if self.workspace is not None:
            seen.extend(self.workspace.shortcuts())
        if self.case_list is not None and hasattr(self.case_list, "shortcuts"):
            seen.extend(self.case_list.shortcuts())
        if self.worklist is not None:
            seen.extend(self.worklist.shortcuts())
        unique: dict[tuple[str, str], None] = dict.fromkeys(seen)
        return list(unique)

    def show_shortcuts(self) -> QDialog:
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard shortcuts")
        dialog.resize(560, 620)
        rows = self.all_shortcuts()
        table = QTableWidget(len(rows), 2)
        table.setObjectName("shortcutTable")
        table.setHorizontalHeaderLabels(["Keys", "Action"])
        table.verticalHeader().hide()
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, (key, text) in enumerate(rows):
            table.setItem(row, 0, QTableWidgetItem(key))
            table.setItem(row, 1, QTableWidgetItem(text))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dialog.reject)
        layout = QVBoxLayout(dialog)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self._keep(dialog)
        dialog.show()
        return dialog

    def sign_out(self) -> None:
        from clinic_app.services.users import logout

        if self.database is not None and self.actor is not None:
            try:
                logout(self.database, self.actor)
            except ClinicError as exc:
                log.warning("Sign-out was not recorded: %s", exc)
        self.signed_out = True
        self.close()

    # -- installation -----------------------------------------------------------------------
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
