"""The audit viewer: the trail page by page with filters, one event's details, export, verify.

Every page shown is itself an audited read (``audit.view``), so pages are loaded through the
GUI's database-writer thread; verification only reads and runs on the general pool. Failed
events (outcome above 0) are drawn in the theme's error colour.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QDateTime,
    QItemSelection,
    Qt,
)
from PySide6.QtGui import QFontDatabase, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDateTimeEdit,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from clinic_app.domain.errors import AccessDenied
from clinic_app.domain.permissions import Permission, allowed
from clinic_app.domain.records import AuditAction, AuditOutcome
from clinic_app.gui.admin._common import (
    ModelIndex,
    RowTableModel,
    StatusLabel,
    add_action,
    background_for,
    compact_rows,
    db_write_for,
    local_time,
    named,
)
from clinic_app.gui.dialogs import show_error
from clinic_app.gui.theme import status_colour
from clinic_app.services import audit as audit_service
from clinic_app.services.audit import AuditEntry, AuditFilter, AuditPage, ExportSummary
from clinic_app.services.context import Actor
from clinic_app.storage.audit import VerificationResult
from clinic_app.storage.engine import Database

#: Suggestions for the event-type filter; any type, or a prefix ending in "*", may be typed.
EVENT_TYPE_SUGGESTIONS = (
    "case.*",
    "user.*",
    "audit.*",
    "privacy.*",
    "settings.*",
    "database.*",
    "model.*",
    "report.*",
    "user.login",
    "case.read",
    "case.decide",
    "case.sign",
    "privacy.release",
    "audit.export",
)
ACTION_NAMES = {
    AuditAction.CREATE: "Create",
    AuditAction.READ: "Read",
    AuditAction.UPDATE: "Update",
    AuditAction.DELETE: "Delete",
    AuditAction.EXECUTE: "Execute",
}
OUTCOME_NAMES = {
    AuditOutcome.SUCCESS: "Success",
    AuditOutcome.MINOR_FAILURE: "Minor failure",
    AuditOutcome.SERIOUS_FAILURE: "Serious failure",
    AuditOutcome.MAJOR_FAILURE: "Major failure",
}
EXPORT_FILTERS = {
    "fhir": "FHIR R4 AuditEvent bundle (*.json)",
    "dicom": "DICOM audit messages, XML (*.xml)",
}
PAGE_SIZES = (50, 100, 200, 500)


class AuditTableModel(RowTableModel[AuditEntry]):
    """One page of audit entries; the rows are plain :class:`AuditEntry` values."""

    COLUMNS = (
        "#",
        "Time (local)",
        "Event",
        "Action",
        "Outcome",
        "User",
        "Role",
        "Workstation",
        "Case",
    )

    def set_entries(self, entries: tuple[AuditEntry, ...]) -> None:
        self.replace_rows(entries)

    def entry(self, row: int) -> AuditEntry:
        return self.rows[row]

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        entry = self.rows[index.row()]
        column = index.column()
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            values = (
                str(entry.sequence),
                local_time(entry.occurred_at),
                entry.event_type,
                ACTION_NAMES.get(entry.action, entry.action.value),
                OUTCOME_NAMES.get(entry.outcome, str(int(entry.outcome))),
                entry.username or "\u2014",
                (entry.role or "\u2014").replace("_", " "),
                entry.workstation,
                entry.case_uid or "",
            )
            if role == Qt.ItemDataRole.ToolTipRole and column == 1:
                return f"{entry.occurred_at.astimezone(UTC).isoformat()} (UTC)"
            return values[column]
        if role == Qt.ItemDataRole.ForegroundRole and entry.outcome != AuditOutcome.SUCCESS:
            return status_colour(QApplication.palette(), "error")
        if role == Qt.ItemDataRole.TextAlignmentRole and column == 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def _aware(value: QDateTime) -> datetime:
    """A QDateTimeEdit's local time as an aware UTC datetime (what AuditFilter needs)."""
    moment = value.toPython()
    assert isinstance(moment, datetime)
    return moment.astimezone().astimezone(UTC)


def _buddy(text: str, widget: QWidget) -> QLabel:
    """A label whose mnemonic (the underlined letter) focuses ``widget``."""
    label = QLabel(text)
    label.setBuddy(widget)
    return label


class AuditViewerDialog(QDialog):
    """Filters, a paged table (newest first), the selected event's details, export, verify."""

    def __init__(
        self,
        database: Database,
        actor: Actor,
        parent: QWidget | None = None,
        *,
        export_dir: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.database = database
        self.actor = actor
        self.export_dir = export_dir
        self.page_data: AuditPage | None = None
        self.verification: VerificationResult | None = None
        self.last_export: ExportSummary | None = None
        self.loading = False
        self._page = 1
        self._anchor: datetime | None = None
        self._generation = 0
        self._shortcuts: list[tuple[str, str]] = []
        self.setObjectName("auditViewerDialog")
        self.setWindowTitle("Audit trail")
        self.resize(1180, 760)

        layout = QVBoxLayout(self)
        layout.addWidget(self._build_filters())
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self._build_table())
        splitter.addWidget(self._build_details())
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout.addWidget(splitter, 1)
        layout.addLayout(self._build_pager())
        layout.addWidget(self._build_verify_box())
        layout.addWidget(self._build_buttons())
        self._build_actions()
        self.refresh()

    # -- layout -------------------------------------------------------------------------------
    def _build_filters(self) -> QGroupBox:
        box = QGroupBox("Filters")
        grid = QGridLayout(box)
        self.event_type_combo = named(QComboBox(editable=True), "auditEventTypeFilter")
        self.event_type_combo.addItem("")
        self.event_type_combo.addItems(EVENT_TYPE_SUGGESTIONS)
        self.event_type_edit = self.event_type_combo.lineEdit()
        assert self.event_type_edit is not None
        self.event_type_edit.setPlaceholderText("any (e.g. case.* or user.login)")
        self._describe(
            self.event_type_combo, "Event type", "An event type, or a prefix ending in *"
        )
        self.user_edit = named(QLineEdit(placeholderText="any user"), "auditUserFilter")
        self._describe(self.user_edit, "User", "Exactly this user name")
        self.case_edit = named(QLineEdit(placeholderText="any case"), "auditCaseFilter")
        self._describe(self.case_edit, "Case", "Events about this case id")
        self.action_combo = named(QComboBox(), "auditActionFilter")
        self.action_combo.addItem("Any action", None)
        for action, name in ACTION_NAMES.items():
            self.action_combo.addItem(name, action)
        self._describe(self.action_combo, "Action", "Create, read, update, delete or execute")
        self.outcome_combo = named(QComboBox(), "auditOutcomeFilter")
        self.outcome_combo.addItem("Any outcome", None)
        for outcome, name in OUTCOME_NAMES.items():
            self.outcome_combo.addItem(name, outcome)
        self._describe(self.outcome_combo, "Outcome", "Success, or refusals and failures")

        now = QDateTime.currentDateTime()
        self.since_check = named(QCheckBox("From"), "auditSinceEnabled")
        self._describe(self.since_check, "Limit start time", "Only events at or after this time")
        self.since_edit = named(QDateTimeEdit(now.addDays(-7)), "auditSinceFilter")
        self.until_check = named(QCheckBox("To"), "auditUntilEnabled")
        self._describe(self.until_check, "Limit end time", "Only events at or before this time")
        self.until_edit = named(QDateTimeEdit(now), "auditUntilFilter")
        for check, edit in (
            (self.since_check, self.since_edit),
            (self.until_check, self.until_edit),
        ):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd HH:mm")
            edit.setEnabled(False)
            self._describe(edit, check.text() + " time", "Local time")
            check.toggled.connect(edit.setEnabled)

        self.apply_button = named(QPushButton("Apply filters"), "auditApplyFilters")
        self.apply_button.setDefault(True)
        self._describe(self.apply_button, "Apply filters", "Show the events that match (Enter)")
        self.apply_button.clicked.connect(self.apply_filters)
        self.clear_button = named(QPushButton("Clear"), "auditClearFilters")
        self._describe(self.clear_button, "Clear filters", "Show every event again")
        self.clear_button.clicked.connect(self.clear_filters)
        for line_edit in (self.user_edit, self.case_edit, self.event_type_edit):
            line_edit.returnPressed.connect(self.apply_filters)

        grid.addWidget(_buddy("&Event type:", self.event_type_combo), 0, 0)
        grid.addWidget(self.event_type_combo, 0, 1)
        grid.addWidget(_buddy("&User:", self.user_edit), 0, 2)
        grid.addWidget(self.user_edit, 0, 3)
        grid.addWidget(_buddy("C&ase:", self.case_edit), 0, 4)
        grid.addWidget(self.case_edit, 0, 5)
        grid.addWidget(_buddy("Ac&tion:", self.action_combo), 1, 0)
        grid.addWidget(self.action_combo, 1, 1)
        grid.addWidget(_buddy("&Outcome:", self.outcome_combo), 1, 2)
        grid.addWidget(self.outcome_combo, 1, 3)
        times = QHBoxLayout()
        times.addWidget(self.since_check)
        times.addWidget(self.since_edit)
        times.addWidget(self.until_check)
        times.addWidget(self.until_edit)
        grid.addLayout(times, 1, 4, 1, 2)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.clear_button)
        buttons.addWidget(self.apply_button)
        grid.addLayout(buttons, 2, 0, 1, 6)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        grid.setColumnStretch(5, 1)
        return box

    def _build_table(self) -> QTableView:
        self.model = AuditTableModel(self)
        self.table = named(QTableView(), "auditTable")
        self.table.setModel(self.model)
        self._describe(self.table, "Audit events", "Newest first; select one to see its details")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        compact_rows(self.table)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for column, width in enumerate((60, 150, 150, 70, 110, 110, 100, 150)):
            self.table.setColumnWidth(column, width)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        return self.table

    def _build_details(self) -> QWidget:
        box = QGroupBox("Selected event")
        layout = QVBoxLayout(box)
        self.details = named(QPlainTextEdit(readOnly=True), "auditEventDetails")
        self.details.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.details.setPlaceholderText("Select an event to see all its fields.")
        self._describe(self.details, "Event details", "Every field of the selected event, as JSON")
        layout.addWidget(self.details)
        return box

    def _build_pager(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.status = named(StatusLabel(), "auditStatus")
        self.newer_button = named(QPushButton("\u25c0 Newer"), "auditNewerPage")
        self._describe(self.newer_button, "Newer page", "Show newer events (Alt+Left)")
        self.newer_button.clicked.connect(self.newer_page)
        self.page_label = named(QLabel(), "auditPageLabel")
        self.older_button = named(QPushButton("Older \u25b6"), "auditOlderPage")
        self._describe(self.older_button, "Older page", "Show older events (Alt+Right)")
        self.older_button.clicked.connect(self.older_page)
        self.page_size_combo = named(QComboBox(), "auditPageSize")
        for size in PAGE_SIZES:
            self.page_size_combo.addItem(f"{size} per page", size)
        self._describe(self.page_size_combo, "Events per page", "How many events one page shows")
        self.page_size_combo.currentIndexChanged.connect(lambda _index: self.refresh())
        row.addWidget(self.status, 1)
        row.addWidget(self.newer_button)
        row.addWidget(self.page_label)
        row.addWidget(self.older_button)
        row.addWidget(self.page_size_combo)
        return row

    def _build_verify_box(self) -> QGroupBox:
        box = QGroupBox("Integrity of the trail")
        layout = QHBoxLayout(box)
        self.verify_result = named(
            StatusLabel(
                "Not checked yet. Verification recomputes every event's hash and checks the signed "
                "checkpoints; it only reads.",
            ),
            "auditVerifyResult",
        )
        self._describe(self.verify_result, "Verification result", "The outcome of Verify chain")
        layout.addWidget(self.verify_result, 1)
        return box

    def _build_buttons(self) -> QDialogButtonBox:
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        role = QDialogButtonBox.ButtonRole.ActionRole
        self.verify_button = buttons.addButton("&Verify chain", role)
        self.verify_button.setObjectName("auditVerifyButton")
        self._describe(
            self.verify_button,
            "Verify chain",
            "Check that no event was changed, removed or added out of order (Ctrl+Shift+V)",
        )
        self.verify_button.clicked.connect(self.verify_chain)
        self.export_button = buttons.addButton("&Export\u2026", role)
        self.export_button.setObjectName("auditExportButton")
        may_export = allowed(self.actor.role, Permission.AUDIT_EXPORT)
        self._describe(
            self.export_button,
            "Export audit trail",
            "Save the events matching the filters as FHIR JSON or DICOM XML (Ctrl+E)"
            if may_export
            else "Only administrators may export the audit trail",
        )
        self.export_button.setEnabled(may_export)
        self.export_button.clicked.connect(self.choose_export_file)
        return buttons

    def _build_actions(self) -> None:
        keys = self._shortcuts
        add_action(
            self,
            "Refresh",
            QKeySequence.StandardKey.Refresh,
            "Show the newest events",
            self.refresh,
            keys,
        )
        add_action(self, "Newer", "Alt+Left", "Newer page of events", self.newer_page, keys)
        add_action(self, "Older", "Alt+Right", "Older page of events", self.older_page, keys)
        add_action(
            self, "Verify", "Ctrl+Shift+V", "Verify the audit chain", self.verify_chain, keys
        )
        if allowed(self.actor.role, Permission.AUDIT_EXPORT):
            add_action(
                self, "Export", "Ctrl+E", "Export the audit trail", self.choose_export_file, keys
            )
        add_action(
            self, "Filter", "Ctrl+F", "Go to the filters", self.event_type_combo.setFocus, keys
        )

    @staticmethod
    def _describe(widget: QWidget, name: str, tip: str) -> None:
        widget.setAccessibleName(name)
        widget.setToolTip(tip)

    def shortcuts(self) -> list[tuple[str, str]]:
        """(key sequence, what it does) for the Help page."""
        return list(self._shortcuts)

    # -- filters and pages --------------------------------------------------------------------
    def current_filter(self) -> AuditFilter:
        """The filter the controls describe (raises InputError for an impossible time range)."""
        event_type = self.event_type_combo.currentText().strip() or None
        return AuditFilter(
            since=_aware(self.since_edit.dateTime()) if self.since_check.isChecked() else None,
            until=_aware(self.until_edit.dateTime()) if self.until_check.isChecked() else None,
            username=self.user_edit.text().strip().lower() or None,
            event_type=event_type,
            case_uid=self.case_edit.text().strip() or None,
            action=self.action_combo.currentData(),
            outcome=self.outcome_combo.currentData(),
        )

    def set_filter(
        self,
        *,
        event_type: str | None = None,
        username: str | None = None,
        case_uid: str | None = None,
        action: AuditAction | None = None,
        outcome: AuditOutcome | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> None:
        """Set the filter controls (for callers that open the viewer on one case or user)."""
        self.event_type_combo.setCurrentText(event_type or "")
        self.user_edit.setText(username or "")
        self.case_edit.setText(case_uid or "")
        self.action_combo.setCurrentIndex(max(0, self.action_combo.findData(action)))
        self.outcome_combo.setCurrentIndex(max(0, self.outcome_combo.findData(outcome)))
        for check, edit, moment in (
            (self.since_check, self.since_edit, since),
            (self.until_check, self.until_edit, until),
        ):
            check.setChecked(moment is not None)
            if moment is not None:
                edit.setDateTime(QDateTime.fromMSecsSinceEpoch(int(moment.timestamp() * 1000)))

    def apply_filters(self) -> None:
        self.refresh(page=1)

    def clear_filters(self) -> None:
        self.set_filter()
        self.refresh(page=1)

    def page_size(self) -> int:
        return int(self.page_size_combo.currentData() or PAGE_SIZES[0])

    def newer_page(self) -> None:
        if self._page > 1:
            self.refresh(page=self._page - 1, keep_anchor=True)

    def older_page(self) -> None:
        if self.page_data is not None and self._page < self.page_data.pages:
            self.refresh(page=self._page + 1, keep_anchor=True)

    def refresh(self, page: int | None = None, *, keep_anchor: bool = False) -> None:
        """Load ``page`` (default: the first) in the background; the newest request wins.

        Viewing a page is itself an audited event, so paging is anchored at the newest event
        of the first page: without that, every page turn would shift the rows by one.
        """
        try:
            filters = self.current_filter()
        except Exception as exc:
            self.status.show_status(str(exc), "error")
            show_error(self, exc)
            return
        anchor = self._anchor if keep_anchor else None
        if anchor is not None and (filters.until is None or anchor < filters.until):
            filters = dataclasses.replace(filters, until=anchor)
        if not keep_anchor:
            self._anchor = None
        target = page or 1
        size = self.page_size()
        self._generation += 1
        generation = self._generation
        self.loading = True
        self.status.show_status("Loading events\u2026")
        database, actor = self.database, self.actor

        def load() -> AuditPage:
            return audit_service.show(database, actor, filters, page=target, page_size=size)

        db_write_for(
            self,
            load,
            lambda result: self._show_page(generation, result),
            lambda exc: self._load_failed(generation, exc),
        )

    def _show_page(self, generation: int, page: AuditPage) -> None:
        if generation != self._generation:
            return
        self.loading = False
        self.page_data = page
        self._page = page.page
        if self._anchor is None and page.page == 1 and page.entries:
            self._anchor = page.entries[0].occurred_at
        self.model.set_entries(page.entries)
        self.details.clear()
        self.page_label.setText(f"Page {page.page} of {page.pages}")
        self.newer_button.setEnabled(page.page > 1)
        self.older_button.setEnabled(page.page < page.pages)
        if page.total == 0:
            self.status.show_status("No event matches these filters.")
        else:
            first = (page.page - 1) * page.page_size + 1
            last = first + len(page.entries) - 1
            self.status.show_status(
                f"Events {first}\u2013{last} of {page.total}, newest first. Press F5 to include "
                "events recorded since."
            )
        if page.entries:
            self.table.selectRow(0)

    def _load_failed(self, generation: int, exc: Exception) -> None:
        if generation != self._generation:
            return
        self.loading = False
        self.newer_button.setEnabled(False)
        self.older_button.setEnabled(False)
        self.status.show_status(str(exc), "error")
        if isinstance(exc, AccessDenied):
            self.apply_button.setEnabled(False)
            self.verify_button.setEnabled(False)
        show_error(self, exc)

    def _selection_changed(self, selected: QItemSelection, _deselected: QItemSelection) -> None:
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        if not rows:
            self.details.clear()
            return
        entry = self.model.entry(min(rows))
        self.details.setPlainText(json.dumps(entry.to_json(), indent=2, ensure_ascii=False))

    def selected_entry(self) -> AuditEntry | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.entry(rows[0].row()) if rows else None

    # -- verification -------------------------------------------------------------------------
    def verify_chain(self) -> None:
        """Verify the whole trail in the background and show the outcome below the table."""
        if not self.verify_button.isEnabled():
            return
        self.verify_button.setEnabled(False)
        self.verification = None
        self.verify_result.show_status("Verifying the audit trail\u2026")
        database = self.database
        background_for(
            self, lambda: audit_service.verify(database), self._verified, self._verify_failed
        )

    def _verified(self, result: VerificationResult) -> None:
        self.verification = result
        self.verify_button.setEnabled(True)
        if result.ok:
            if result.last_sequence == 0:
                text = "\u2714 The audit trail is empty and consistent."
            else:
                text = (
                    f"\u2714 Chain intact: {result.events_checked} events checked, hash chain "
                    f"unbroken; {result.checkpoints_checked} signed checkpoints verify, the "
                    f"newest covering event {result.signed_through} (key {result.key_id}). "
                    f"Head hash {result.head_hash[:16]}\u2026 \u2014 note it outside the "
                    "database to detect a later rollback."
                )
            self.verify_result.show_status(text, "ok")
        else:
            where = (
                f" at event {result.first_bad_sequence}"
                if result.first_bad_sequence is not None
                else ""
            )
            self.verify_result.show_status(
                f"\u2718 Verification FAILED{where}: {result.reason} Keep a copy of the "
                "database as it is and report this to whoever is responsible for security.",
                "error",
            )

    def _verify_failed(self, exc: Exception) -> None:
        self.verify_button.setEnabled(True)
        self.verify_result.show_status(f"\u2718 The trail could not be verified: {exc}", "error")
        show_error(self, exc)

    # -- export -------------------------------------------------------------------------------
    def choose_export_file(self) -> None:
        """Ask where to save, then export the events matching the current filters."""
        if not self.export_button.isEnabled():
            return
        stamp = datetime.now().strftime("%Y%m%d-%H%M")
        folder = self.export_dir or Path.home()
        path, chosen = QFileDialog.getSaveFileName(
            self,
            "Export audit trail",
            str(folder / f"audit-trail-{stamp}.json"),
            ";;".join(EXPORT_FILTERS.values()),
        )
        if not path:
            return
        export_format = next(
            (name for name, text in EXPORT_FILTERS.items() if text == chosen), "fhir"
        )
        target = Path(path)
        if not target.suffix:
            target = target.with_suffix(".json" if export_format == "fhir" else ".xml")
        self.export_to(target, export_format, overwrite=True)

    def export_to(self, path: Path, export_format: str, *, overwrite: bool = False) -> None:
        """Export the events matching the filters to ``path`` in the background."""
        try:
            filters = self.current_filter()
        except Exception as exc:
            show_error(self, exc)
            return
        self.export_button.setEnabled(False)
        self.status.show_status(f"Exporting to {path}\u2026")
        database, actor = self.database, self.actor

        def work() -> ExportSummary:
            return audit_service.export(
                database, actor, export_format, path, filters, overwrite=overwrite
            )

        db_write_for(self, work, self._exported, self._export_failed)

    def _exported(self, summary: ExportSummary) -> None:
        self.last_export = summary
        self.export_button.setEnabled(True)
        self.status.show_status(
            f"Exported {summary.events} events to {summary.path} "
            f"(sha256 {summary.sha256[:16]}\u2026).",
            "ok",
        )

    def _export_failed(self, exc: Exception) -> None:
        self.export_button.setEnabled(True)
        self.status.show_status(f"Not exported: {exc}", "error")
        show_error(self, exc)
