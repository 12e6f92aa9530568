"""The triage worklist: analysed cases by risk or uncertainty, reviewed one after another with
the keyboard alone (J/K move, A/O/R decide, S signs, Enter opens the case).

Unlike the case list's virtual scrolling (clinic_app.gui.case_list), the worklist holds one
page of rows at a time and turns pages explicitly: a worklist is worked through in order, rows
are updated in place after each decision and must not jump under the clinician's keys while
other pages are fetched. Rows that a decision moved out of the filter stay until the next
refresh; the next page starts after the rows still matching. Every service call runs off the
GUI thread (reads on the view's own one-thread pool, decisions through ``run_db_write``).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import shiboken6
from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRectF,
    QSize,
    Qt,
    QThreadPool,
    Signal,
)
from PySide6.QtGui import QAction, QColor, QKeyEvent, QKeySequence, QPainter, QPalette, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from clinic_app.domain.cases import SuggestionInfo
from clinic_app.domain.records import DecisionAction
from clinic_app.domain.worklist import (
    CRITICAL_FLAG_THRESHOLD,
    FLAG_ABSTAINED,
    FLAG_CRITICAL,
    FLAG_OVERRIDE,
    FLAG_REJECTED,
    REVIEWER_ME,
    REVIEWER_UNASSIGNED,
    WorklistItem,
    WorklistPage,
    WorklistQuery,
    WorklistSort,
    WorklistStatus,
)
from clinic_app.gui.admin._common import RowTableModel
from clinic_app.gui.case_list import (
    CASE_ROLE,
    COMPOSITE_DEMO_TAG,
    COMPOSITE_DEMO_TOOLTIP,
    STATUS_LABELS,
    CompositeDemoBadgeDelegate,
)
from clinic_app.gui.decision_panel import OverrideDialog, ReasonDialog, SignDialog
from clinic_app.gui.dialogs import show_error
from clinic_app.gui.theme import status_colour
from clinic_app.gui.workers import run_db_write, run_in_background
from clinic_app.services.context import Actor
from clinic_app.services.worklist import WorklistService

log = logging.getLogger(__name__)

_NONE = "\u2014"
_D = TypeVar("_D", bound=QDialog)
#: ``data(index, ITEM_ROLE)`` is the row's WorklistItem.
ITEM_ROLE = Qt.ItemDataRole.UserRole + 2


def percent(probability: float | None) -> str:
    return _NONE if probability is None else f"{max(0.0, min(1.0, probability)) * 100:.0f} %"


def probability_of(suggestion: SuggestionInfo) -> float:
    """The calibrated probability, else the raw one (uncalibrated bundles)."""
    calibrated = suggestion.calibrated_probability
    return calibrated if calibrated is not None else suggestion.probability


# -- flags ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChipStyle:
    """How a flag is drawn: a symbol and text (never colour alone) on a tinted chip."""

    symbol: str
    fill: str
    border: str
    ink: str


_CHIP_STYLES = {
    FLAG_CRITICAL: ChipStyle("\u26a0", "#f8d7da", "#d9828a", "#842029"),
    FLAG_ABSTAINED: ChipStyle("?", "#fff3cd", "#e0c36a", "#664d03"),
    FLAG_OVERRIDE: ChipStyle("\u270e", "#e7dcfb", "#a98eda", "#3d1a78"),
    FLAG_REJECTED: ChipStyle("\u2716", "#e7dcfb", "#a98eda", "#3d1a78"),
}
_MISSING_CHIP = ChipStyle("\u2205", "#e2e3e5", "#b5b8bc", "#363a3e")
FLAG_HELP = {
    FLAG_CRITICAL: "A label flagged critical in the model bundle has a calibrated "
    "probability of 50 % or more",
    FLAG_ABSTAINED: "The model abstained on at least one label (insufficient confidence)",
    FLAG_OVERRIDE: "A clinician overrode a suggestion of this analysis",
    FLAG_REJECTED: "A clinician rejected a suggestion of this analysis",
}


def chip_style(flag: str) -> ChipStyle:
    return _CHIP_STYLES.get(flag, _MISSING_CHIP)


def chip_text(flag: str) -> str:
    return f"{chip_style(flag).symbol} {flag}"


def flag_tooltip(flag: str) -> str:
    return FLAG_HELP.get(flag, f"{flag.capitalize()}: the model analysed the case without it")


class FlagChipsDelegate(QStyledItemDelegate):
    """Draws a row's flags as chips: symbol and words on a tint (the text carries the meaning)."""

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        item = index.data(ITEM_ROLE)
        view_item = QStyleOptionViewItem(option)
        self.initStyleOption(view_item, index)
        view_item.text = ""
        widget = view_item.widget
        style = widget.style() if widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, view_item, painter, widget)
        if not isinstance(item, WorklistItem) or not item.flags:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        metrics = view_item.fontMetrics
        area = QRectF(view_item.rect).adjusted(3, 3, -3, -3)
        left = area.left()
        for number, flag in enumerate(item.flags):
            text = chip_text(flag)
            width = float(metrics.horizontalAdvance(text) + 10)
            remaining = area.right() - left
            if width > remaining:
                if number:  # no room: say how many more rather than cut a word
                    more = f"+{len(item.flags) - number}"
                    painter.setPen(view_item.palette.color(QPalette.ColorRole.Text))
                    painter.drawText(
                        QRectF(left, area.top(), max(remaining, 0), area.height()),
                        Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                        more,
                    )
                    break
                width = remaining
                text = metrics.elidedText(text, Qt.TextElideMode.ElideRight, int(width - 8))
            chip = QRectF(left, area.top(), width, area.height())
            look = chip_style(flag)
            painter.setPen(QPen(QColor(look.border), 1))
            painter.setBrush(QColor(look.fill))
            painter.drawRoundedRect(chip, 4, 4)
            painter.setPen(QColor(look.ink))
            painter.drawText(chip, Qt.AlignmentFlag.AlignCenter, text)
            left += width + 4
        painter.restore()

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        item = index.data(ITEM_ROLE)
        hint = super().sizeHint(option, index)
        if isinstance(item, WorklistItem) and item.flags:
            metrics = option.fontMetrics
            width = sum(metrics.horizontalAdvance(chip_text(f)) + 14 for f in item.flags)
            hint.setWidth(max(hint.width(), width + 6))
        return hint


# -- the model -----------------------------------------------------------------------------
@dataclass(frozen=True)
class WorklistColumn:
    title: str
    tooltip: str


COLUMNS: tuple[WorklistColumn, ...] = (
    WorklistColumn(
        "Risk",
        "Highest calibrated probability of a label flagged critical in the model bundle",
    ),
    WorklistColumn("Flags", "Critical \u2265 50 %, abstentions, missing inputs, overrides"),
    WorklistColumn(
        "Case", "The case id (a random code; the patient's pseudonym is in its tooltip)"
    ),
    WorklistColumn("Title", "What the case is about; composite demo cases carry a badge"),
    WorklistColumn("Top suggestion", "The model's highest-ranked confident suggestion"),
    WorklistColumn("Status", "Analysed, in review (with a decision: \u2714) or signed"),
    WorklistColumn("Reviewer", "The clinician reviewing the case"),
)
RISK_COLUMN, FLAGS_COLUMN, CASE_COLUMN, TITLE_COLUMN = 0, 1, 2, 3


def status_text(item: WorklistItem) -> str:
    label = STATUS_LABELS.get(item.status, str(item.status))
    return f"\u2714 {label}" if item.decided and not item.signed else label


def display_row(item: WorklistItem) -> tuple[str, ...]:
    top = (
        f"{item.top_suggestion} \u00b7 {percent(item.top_probability)}"
        if item.top_suggestion
        else "(all abstained)"
    )
    return (
        percent(item.risk),
        ", ".join(item.flags),
        item.case_uid,
        item.title.strip() or "(untitled)",
        top,
        status_text(item),
        item.reviewer or _NONE,
    )


class WorklistModel(RowTableModel[WorklistItem]):
    """The rows of the page on screen; a decided case's row is replaced in place."""

    COLUMNS = tuple(column.title for column in COLUMNS)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._display: list[tuple[str, ...]] = []

    @property
    def items(self) -> list[WorklistItem]:
        return self.rows

    def set_items(self, items: list[WorklistItem]) -> None:
        self._display = [display_row(item) for item in items]
        self.replace_rows(items)

    def replace_item(self, row: int, item: WorklistItem) -> None:
        self.rows[row] = item
        self._display[row] = display_row(item)
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1), [])

    def row_of(self, case_uid: str) -> int | None:
        return next((n for n, item in enumerate(self.rows) if item.case_uid == case_uid), None)

    def data(
        self,
        index: QModelIndex | QPersistentModelIndex,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.items):
            return None
        row, column = index.row(), index.column()
        item = self.items[row]
        if role == Qt.ItemDataRole.DisplayRole:
            return "" if column == FLAGS_COLUMN else self._display[row][column]
        if role == ITEM_ROLE:
            return item
        if role == CASE_ROLE:
            return item.summary  # the case list's composite-demo badge reads this
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(item, row, column)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            shown = self._display[row][column] or "none"
            return f"{COLUMNS[column].title}: {shown}"
        if role == Qt.ItemDataRole.TextAlignmentRole and column == RISK_COLUMN:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        critical = item.risk is not None and item.risk >= CRITICAL_FLAG_THRESHOLD
        if role == Qt.ItemDataRole.FontRole and column == RISK_COLUMN and critical:
            font = QApplication.font()
            font.setBold(True)
            return font
        return None

    def _tooltip(self, item: WorklistItem, row: int, column: int) -> str:
        if column == RISK_COLUMN:
            if item.top_critical is None:
                return "No label flagged critical in this analysis"
            return f"{item.top_critical}: {percent(item.risk)} (calibrated)"
        if column == FLAGS_COLUMN:
            return "\n".join(flag_tooltip(f) for f in item.flags) or "No flags"
        if column == TITLE_COLUMN and item.is_composite_demo:
            return f"{item.title}\n{COMPOSITE_DEMO_TOOLTIP}"
        if column == CASE_COLUMN:
            return f"Case {item.case_uid}, version {item.version}; patient {item.patient_pseudonym}"
        return self._display[row][column]

    def headerData(
        self,
        section: int,
        orientation: Qt.Orientation,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        horizontal = orientation == Qt.Orientation.Horizontal and 0 <= section < len(COLUMNS)
        if horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section].tooltip
        return super().headerData(section, orientation, role)


class _EnterConfirms(QObject):
    """Enter in a dialog's multi-line reason confirms it (Shift+Enter: a new line)."""

    def __init__(self, dialog: QDialog) -> None:
        super().__init__(dialog)
        self.dialog = dialog

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
            and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self.dialog.accept()
            return True
        return False


def enter_confirms(dialog: QDialog, *edits: QPlainTextEdit | QLineEdit) -> None:
    """Enter in any of ``edits`` confirms ``dialog`` (its own accept() refuses what is
    incomplete), whether or not the dialog has settled on a default button yet."""
    confirm = _EnterConfirms(dialog)
    for edit in edits:
        if isinstance(edit, QLineEdit):
            edit.returnPressed.connect(dialog.accept)
        else:
            edit.installEventFilter(confirm)


# -- the view ------------------------------------------------------------------------------
STATUS_CHOICES: tuple[tuple[str, WorklistStatus], ...] = (
    ("Unsigned (analysed or in review)", WorklistStatus.UNSIGNED),
    ("Analysed, not yet decided", WorklistStatus.ANALYSED),
    ("In review", WorklistStatus.IN_REVIEW),
    ("Signed", WorklistStatus.SIGNED),
)
SORT_HELP = {
    WorklistSort.RISK: "Highest calibrated probability of a critical label first",
    WorklistSort.UNCERTAINTY: "Cases with abstentions first, then those whose top suggestion "
    "is closest to 50 %",
}


class WorklistView(QWidget):
    """Sort switch, filters, progress, the worklist table and the review pane of one case."""

    #: Enter on a case: the lead's window opens the full case workspace.
    openCase = Signal(str)
    #: A case changed through the worklist (decided, signed): other views should refresh.
    caseChanged = Signal(str)
    #: A short message for the status bar.
    statusMessage = Signal(str)
    #: A page arrived and is shown (its offset).
    pageLoaded = Signal(int)

    def __init__(
        self,
        service: WorklistService,
        actor: Actor,
        *,
        page_size: int = 100,
        auto_advance: bool = True,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("worklist")
        self.service = service
        self.actor = actor
        self.page_size = page_size
        self.offset = 0
        self.total = 0
        self.reviewed = 0
        self.loading = False
        self.busy = False  # a decision or sign-off is being written
        self.dialog: QDialog | None = None  # the dialog open now (tests drive it)
        self.selected_suggestion: int | None = None
        self._generation = 0
        self._actions: list[tuple[QAction, str]] = []
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._pool.setObjectName("clinicfusion-worklist")
        self._select_after_load: str | int | None = None  # case uid, or "first"/"last" row
        self.model = WorklistModel(self)
        self._build_controls(auto_advance)
        self._build_table()
        self._build_review_pane()
        self._layout()
        self._build_shortcuts()
        self.load(0)

    # -- construction ---------------------------------------------------------------------------
    def _build_controls(self, auto_advance: bool) -> None:
        self.sort_switch = QComboBox()
        self.sort_switch.setObjectName("worklistSort")
        self.sort_switch.addItem("Risk", WorklistSort.RISK)
        self.sort_switch.addItem("Uncertainty", WorklistSort.UNCERTAINTY)
        self.sort_switch.setAccessibleName("Sort by")
        self.sort_switch.setToolTip(
            "Risk: " + SORT_HELP[WorklistSort.RISK] + ".\nUncertainty: "
            f"{SORT_HELP[WorklistSort.UNCERTAINTY]}. (Ctrl+1 / Ctrl+2)"
        )
        self.status_filter = QComboBox()
        self.status_filter.setObjectName("worklistStatusFilter")
        for label, value in STATUS_CHOICES:
            self.status_filter.addItem(label, value)
        self.status_filter.setAccessibleName("Status filter")
        self.status_filter.setToolTip("Show only cases in this review state")
        self.reviewer_filter = QComboBox()
        self.reviewer_filter.setObjectName("worklistReviewerFilter")
        self.reviewer_filter.addItem("Any reviewer", None)
        self.reviewer_filter.addItem(f"Me ({self.actor.username})", REVIEWER_ME)
        self.reviewer_filter.addItem("Unassigned", REVIEWER_UNASSIGNED)
        self.reviewer_filter.setAccessibleName("Reviewer filter")
        self.reviewer_filter.setToolTip("Cases reviewed by me, by nobody yet, or by anyone")
        self.flagged_only = QCheckBox("Flagged only")
        self.flagged_only.setObjectName("worklistFlaggedOnly")
        self.flagged_only.setAccessibleName("Flagged cases only")
        self.flagged_only.setToolTip("Only cases with a critical label \u2265 50 % or abstentions")
        self.auto_advance = QCheckBox("Next case after a decision")
        self.auto_advance.setObjectName("worklistAutoAdvance")
        self.auto_advance.setChecked(auto_advance)
        self.auto_advance.setAccessibleName("Go to the next undecided case after a decision")
        self.auto_advance.setToolTip("After a decision, move to the next case without one")
        for combo in (self.sort_switch, self.status_filter, self.reviewer_filter):
            combo.currentIndexChanged.connect(self.apply_filters)
        self.flagged_only.toggled.connect(self.apply_filters)

        self.progress = QProgressBar()
        self.progress.setObjectName("worklistProgress")
        self.progress.setAccessibleName("Review progress")
        self.progress.setToolTip("Cases of this list signed or with a decision on their analysis")
        self.progress.setTextVisible(False)  # the label beside it says it, never hidden by the bar
        self.progress.setMaximumWidth(self.fontMetrics().horizontalAdvance("W" * 12))
        self.progress_label = QLabel()
        self.progress_label.setObjectName("worklistProgressText")
        self.progress_label.setAccessibleName("Review progress")
        self.page_label = QLabel("Loading\u2026")
        self.page_label.setObjectName("worklistPageLabel")
        self.page_label.setAccessibleName("Cases shown")
        self.previous_page_button = QPushButton("\u25c0 Previous page")
        self.next_page_button = QPushButton("Next page \u25b6")
        for button, name, tip in (
            (self.previous_page_button, "worklistPreviousPage", "Previous page (Ctrl+PgUp)"),
            (self.next_page_button, "worklistNextPage", "Next page (Ctrl+PgDown)"),
        ):
            button.setObjectName(name)
            button.setAccessibleName(tip.split(" (")[0])
            button.setToolTip(tip)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.previous_page_button.clicked.connect(self.previous_page)
        self.next_page_button.clicked.connect(self.next_page)
        self.message = QLabel()
        self.message.setObjectName("worklistMessage")
        self.message.setAccessibleName("Last action")
        self.message.setWordWrap(True)

    def _build_table(self) -> None:
        table = QTableView()
        table.setObjectName("worklistTable")
        table.setAccessibleName("Worklist")
        table.setToolTip("J/K or Down/Up: next/previous case; Enter opens the case")
        table.setModel(self.model)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setAlternatingRowColors(True)
        table.setShowGrid(False)
        table.setWordWrap(False)
        table.setTabKeyNavigation(False)
        rows = table.verticalHeader()
        rows.setVisible(False)
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        rows.setDefaultSectionSize(table.fontMetrics().height() + 12)
        metrics = table.fontMetrics()
        widths = {
            RISK_COLUMN: "Risk 100 %",
            # Flags beyond the column's width show as "+N" (all are in the tooltip and the
            # review pane), so the title, with its composite badge, keeps room to be read.
            FLAGS_COLUMN: "\u26a0 critical \u2265 50%  ? abstained  +1",
            CASE_COLUMN: "C-WWWWWWWWWW",
            4: "Sinus bradycardia \u00b7 100 %",
            5: "\u2714 In reviewW",
            6: "reviewernam",
        }
        for column, sample in widths.items():
            table.setColumnWidth(column, metrics.horizontalAdvance(sample) + 18)
        header = table.horizontalHeader()
        header.setHighlightSections(False)
        header.setSectionResizeMode(TITLE_COLUMN, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(metrics.horizontalAdvance("Risk") + 24)
        self._flags_delegate = FlagChipsDelegate(table)
        self._title_delegate = CompositeDemoBadgeDelegate(table)
        table.setItemDelegateForColumn(FLAGS_COLUMN, self._flags_delegate)
        table.setItemDelegateForColumn(TITLE_COLUMN, self._title_delegate)
        table.doubleClicked.connect(lambda _index: self.open_current())
        self.table = table

    def _build_review_pane(self) -> None:
        pane = QFrame()
        pane.setObjectName("worklistReviewPane")
        pane.setFrameShape(QFrame.Shape.StyledPanel)
        self.case_heading = QLabel()
        self.case_heading.setObjectName("worklistCaseHeading")
        self.case_heading.setWordWrap(True)
        self.case_heading.setTextFormat(Qt.TextFormat.RichText)
        self.case_heading.setAccessibleName("Current case")
        self.composite_badge = QLabel(COMPOSITE_DEMO_TAG)
        self.composite_badge.setObjectName("worklistCompositeBadge")
        self.composite_badge.setToolTip(COMPOSITE_DEMO_TOOLTIP)
        fill, border, ink = (c.name() for c in (
            CompositeDemoBadgeDelegate.FILL,
            CompositeDemoBadgeDelegate.BORDER,
            CompositeDemoBadgeDelegate.INK,
        ))  # fmt: skip
        self.composite_badge.setStyleSheet(
            f"QLabel {{ background: {fill}; border: 1px solid {border}; color: {ink}; "
            "border-radius: 4px; padding: 2px 6px; font-weight: 600; }"
        )
        self.flags_label = QLabel()
        self.flags_label.setObjectName("worklistCaseFlags")
        self.flags_label.setWordWrap(True)
        self.flags_label.setTextFormat(Qt.TextFormat.RichText)
        self.flags_label.setAccessibleName("Flags of the current case")
        self.suggestion_list = QListWidget()
        self.suggestion_list.setObjectName("worklistSuggestions")
        self.suggestion_list.setAccessibleName("Suggestions of the current case")
        self.suggestion_list.setToolTip(
            "Left/Right or 1\u20139 choose the suggestion that A, O and R act on"
        )
        self.suggestion_list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.suggestion_list.setWordWrap(True)
        self.suggestion_list.currentRowChanged.connect(self._suggestion_row_changed)
        self.accept_button = QPushButton("Accept (A)")
        self.override_button = QPushButton("Override\u2026 (O)")
        self.reject_button = QPushButton("Reject\u2026 (R)")
        self.sign_button = QPushButton("Sign\u2026 (S)")
        self.open_button = QPushButton("Open case (Enter)")
        buttons = (
            (self.accept_button, "worklistAccept", "Accept the chosen suggestion", self.accept),
            (
                self.override_button,
                "worklistOverride",
                "Replace the chosen suggestion with your diagnosis (reason required)",
                self.override,
            ),
            (
                self.reject_button,
                "worklistReject",
                "Reject the chosen suggestion (reason required)",
                self.reject,
            ),
            (
                self.sign_button,
                "worklistSign",
                "Write the final impression and sign with your password",
                self.sign,
            ),
            (self.open_button, "worklistOpen", "Open the full case workspace", self.open_current),
        )
        for button, name, tip, slot in buttons:
            button.setObjectName(name)
            button.setToolTip(tip)
            button.setAccessibleName(tip)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # focus stays on the list: keys work
            button.clicked.connect(lambda _checked=False, act=slot: act())
        self.keys_hint = QLabel(
            "<small><b>J</b>/<b>K</b> next/previous \u00b7 <b>\u2190</b>/<b>\u2192</b> or "
            "<b>1\u20139</b> choose \u00b7 <b>A</b> accept \u00b7 <b>O</b> override \u00b7 "
            "<b>R</b> reject \u00b7 <b>S</b> sign \u00b7 <b>Enter</b> open \u00b7 "
            "<b>F5</b> refresh</small>"
        )
        self.keys_hint.setObjectName("worklistKeysHint")
        self.keys_hint.setWordWrap(True)
        self.keys_hint.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        heading_row = QHBoxLayout()
        heading_row.addWidget(self.case_heading, 1)
        heading_row.addWidget(self.composite_badge, 0, Qt.AlignmentFlag.AlignTop)
        decide_row = QHBoxLayout()
        for button in (self.accept_button, self.override_button, self.reject_button):
            decide_row.addWidget(button)
        finish_row = QHBoxLayout()
        finish_row.addWidget(self.sign_button)
        finish_row.addWidget(self.open_button)
        layout = QVBoxLayout(pane)
        layout.addLayout(heading_row)
        layout.addWidget(self.flags_label)
        caption = QLabel("<b>Suggestions</b> <small>(calibrated probability)</small>")
        caption.setBuddy(self.suggestion_list)
        layout.addWidget(caption)
        layout.addWidget(self.suggestion_list, 1)
        layout.addLayout(decide_row)
        layout.addLayout(finish_row)
        layout.addWidget(self.keys_hint)
        self.review_pane = pane

    def _layout(self) -> None:
        controls = QHBoxLayout()
        for label, widget in (
            ("Sort by:", self.sort_switch),
            ("Status:", self.status_filter),
            ("Reviewer:", self.reviewer_filter),
        ):
            caption = QLabel(label)
            caption.setBuddy(widget)
            controls.addWidget(caption)
            controls.addWidget(widget)
        controls.addWidget(self.flagged_only)
        controls.addStretch(1)
        controls.addWidget(self.auto_advance)
        footer = QHBoxLayout()
        footer.addWidget(self.progress)
        footer.addWidget(self.progress_label)
        footer.addSpacing(16)
        footer.addWidget(self.page_label, 1)
        footer.addWidget(self.previous_page_button)
        footer.addWidget(self.next_page_button)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setObjectName("worklistSplitter")
        splitter.addWidget(self.table)
        splitter.addWidget(self.review_pane)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setChildrenCollapsible(False)
        # the table gets the room; the review pane what its text needs
        self.review_pane.setMinimumWidth(self.fontMetrics().horizontalAdvance("W" * 28))
        self.review_pane.setMaximumWidth(self.fontMetrics().horizontalAdvance("W" * 40))
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.message)
        layout.addLayout(footer)
        self.table.selectionModel().currentRowChanged.connect(self._current_row_changed)
        self._show_item(None)

    def _build_shortcuts(self) -> None:
        add = self._shortcut
        add(("J", "Down"), "Next case", self.next_case)
        add(("K", "Up"), "Previous case", self.previous_case)
        add(("Right",), "Next suggestion", lambda: self.step_suggestion(1))
        add(("Left",), "Previous suggestion", lambda: self.step_suggestion(-1))
        for number in range(1, 10):
            add(
                (str(number),),
                f"Choose suggestion {number}" if number == 1 else "",
                partial(self.choose_suggestion, number - 1),
            )
        add(("A",), "Accept the chosen suggestion", self.accept)
        add(("O",), "Override the chosen suggestion (reason, SNOMED CT code)", self.override)
        add(("R",), "Reject the chosen suggestion (reason)", self.reject)
        add(("S",), "Sign the case (final impression, password)", self.sign)
        add(("Return", "Enter"), "Open the case workspace", self.open_current)
        add(("F5",), "Refresh the worklist", self.refresh)
        add(("Ctrl+PgDown",), "Next page", self.next_page)
        add(("Ctrl+PgUp",), "Previous page", self.previous_page)
        add(("Ctrl+1",), "Sort by risk", lambda: self.sort_switch.setCurrentIndex(0))
        add(("Ctrl+2",), "Sort by uncertainty", lambda: self.sort_switch.setCurrentIndex(1))

    def _shortcut(self, keys: tuple[str, ...], text: str, slot: Callable[[], object]) -> None:
        action = QAction(text or "Choose a suggestion by number", self)
        action.setShortcuts([QKeySequence(k) for k in keys])
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        if text:
            self._actions.append((action, text))

    def shortcuts(self) -> list[tuple[str, str]]:
        """(key sequence, what it does) for Help."""
        listed = [
            (
                " / ".join(
                    s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts()
                ),
                text,
            )
            for action, text in self._actions
        ]
        for number, (keys, _text) in enumerate(listed):
            if keys == "1":
                listed[number] = ("1\u20139", "Choose suggestion 1 to 9")
        return listed

    # -- query and pages --------------------------------------------------------------------------
    def current_query(self) -> WorklistQuery:
        return WorklistQuery(
            sort=WorklistSort(self.sort_switch.currentData()),
            status=WorklistStatus(self.status_filter.currentData()),
            reviewer=self.reviewer_filter.currentData(),
            only_flagged=self.flagged_only.isChecked(),
        )

    def apply_filters(self) -> None:
        """Show the first page of the list the controls describe."""
        self.load(0)

    def refresh(self) -> None:
        """Fetch the page on screen again (keeps the current case selected if still listed)."""
        item = self.current_item()
        self.load(self.offset, select=item.case_uid if item else "first")

    def next_page(self) -> None:
        if self.has_more_pages():
            self.load(self._next_offset(), select="first")

    def previous_page(self) -> None:
        if self.offset > 0:
            self.load(max(0, self.offset - self.page_size), select="last")

    def load(self, offset: int, *, select: str | int | None = "first") -> None:
        """Fetch the page starting at ``offset`` in the background, then select ``select``."""
        self._generation += 1
        generation, query, size = self._generation, self.current_query(), self.page_size
        self._select_after_load = select
        self._set_loading(True)
        service, actor = self.service, self.actor
        run_in_background(
            partial(service.worklist, actor, query, page_size=size, offset=offset),
            partial(_deliver_page, self, generation),
            partial(_deliver_page_error, self, generation),
            pool=self._pool,
        )

    def wait_for_background(self, timeout_ms: int = 30_000) -> bool:
        """Block until the page request in flight has finished (before closing the database)."""
        return bool(self._pool.waitForDone(timeout_ms))

    def _page_arrived(self, generation: int, page: WorklistPage) -> None:
        if generation != self._generation:
            return
        self._set_loading(False)
        self.offset, self.total, self.reviewed = page.offset, page.total, page.reviewed
        self.model.set_items(page.items)
        self._update_progress()
        target = self._select_after_load
        row: int | None = None
        if isinstance(target, str) and target not in ("first", "last"):
            row = self.model.row_of(target)
        if target == "last" and page.items:
            row = len(page.items) - 1
        if row is None and page.items:
            row = 0
        if row is not None:
            self.select_row(row)
        else:
            self._show_item(None)
        self.pageLoaded.emit(page.offset)

    def _page_failed(self, generation: int, exc: Exception) -> None:
        if generation != self._generation:
            return
        self._set_loading(False)
        self.page_label.setText("The worklist could not be loaded. Press F5 to try again.")
        show_error(self, exc)

    def _set_loading(self, loading: bool) -> None:
        self.loading = loading
        if loading:
            self.page_label.setText("Loading\u2026")

    def _still_matches(self, item: WorklistItem) -> bool:
        """Whether a row changed by a decision here still belongs to the loaded query."""
        query = self.current_query()
        if item.status not in query.status.statuses:
            return False
        return not (query.reviewer == REVIEWER_UNASSIGNED and item.reviewer is not None)

    def has_more_pages(self) -> bool:
        """Whether cases of the loaded list follow the page on screen."""
        return self.offset + len(self.model.items) < self.total

    def _rows_left(self) -> int:
        return sum(1 for item in self.model.items if not self._still_matches(item))

    def _next_offset(self) -> int:
        """Where the next page starts: rows decided out of the filter no longer count."""
        return self.offset + len(self.model.items) - self._rows_left()

    def _update_progress(self) -> None:
        total, reviewed = self.total, min(self.reviewed, self.total)
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(reviewed if total else 0)
        self.progress.setFormat(f"{reviewed:,} of {total:,} reviewed")
        self.progress_label.setText(self.progress.format())
        self.progress.setAccessibleDescription(f"{reviewed} of {total} reviewed")
        rows = len(self.model.items)
        if not total:
            self.page_label.setText("No analysed cases match. Change the filters, or F5.")
        else:
            first, last = self.offset + 1, self.offset + rows
            self.page_label.setText(f"Cases {first:,}\u2013{last:,} of {total:,}")
        self.previous_page_button.setEnabled(self.offset > 0)
        self.next_page_button.setEnabled(self.has_more_pages())

    # -- moving ---------------------------------------------------------------------------------
    def current_row(self) -> int | None:
        index = self.table.currentIndex()
        return index.row() if index.isValid() else None

    def current_item(self) -> WorklistItem | None:
        row = self.current_row()
        return self.model.items[row] if row is not None else None

    def select_row(self, row: int) -> None:
        index = self.model.index(row, CASE_COLUMN)
        self.table.setCurrentIndex(index)
        self.table.scrollTo(index)
        if not self.table.hasFocus() and self.dialog is None:
            self.table.setFocus(Qt.FocusReason.OtherFocusReason)

    def next_case(self) -> None:
        row = self.current_row()
        if row is None:
            if self.model.items:
                self.select_row(0)
        elif row + 1 < len(self.model.items):
            self.select_row(row + 1)
        elif not self.loading:
            self.next_page()

    def previous_case(self) -> None:
        row = self.current_row()
        if row is not None and row > 0:
            self.select_row(row - 1)
        elif row == 0 and not self.loading:
            self.previous_page()

    def advance_to_undecided(self, after_row: int) -> None:
        """Select the next case without a decision after ``after_row`` (next page if none)."""
        for row in range(after_row + 1, len(self.model.items)):
            if not self.model.items[row].reviewed:
                self.select_row(row)
                return
        if self.has_more_pages():
            self.next_page()

    def _current_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self.selected_suggestion = None
        self._show_item(self.model.items[current.row()] if current.isValid() else None)

    # -- the review pane ----------------------------------------------------------------------
    def _show_item(self, item: WorklistItem | None) -> None:
        self.suggestion_list.blockSignals(True)
        self.suggestion_list.clear()
        self.suggestion_list.blockSignals(False)
        self.composite_badge.setVisible(bool(item and item.is_composite_demo))
        if item is None:
            self.case_heading.setText("<i>No case selected.</i>")
            self.flags_label.setText("")
            self._enable_actions(None)
            return
        reviewer = f" \u00b7 reviewer {html.escape(item.reviewer)}" if item.reviewer else ""
        self.case_heading.setText(
            f"<b>{html.escape(item.title.strip() or '(untitled)')}</b><br>"
            f"<small>{html.escape(item.case_uid)} v{item.version} \u00b7 patient "
            f"{html.escape(item.patient_pseudonym)} \u00b7 "
            f"{html.escape(status_text(item))}{reviewer}</small>"
        )
        self.flags_label.setText(self._flags_html(item))
        for suggestion in item.suggestions:
            entry = QListWidgetItem(self._suggestion_text(item, suggestion))
            entry.setData(Qt.ItemDataRole.UserRole, suggestion.id)
            entry.setToolTip(
                f"{suggestion.code_system} {suggestion.code}; raw probability "
                f"{percent(suggestion.probability)}"
            )
            if suggestion.abstained:
                entry.setForeground(self.palette().color(QPalette.ColorRole.PlaceholderText))
            self.suggestion_list.addItem(entry)
        default = next((n for n, s in enumerate(item.suggestions) if not s.abstained), 0)
        if item.suggestions:
            self.suggestion_list.setCurrentRow(default)
        self._enable_actions(item)

    def _flags_html(self, item: WorklistItem) -> str:
        if not item.flags:
            return "<small>No flags.</small>"
        chips = []
        for flag in item.flags:
            look = chip_style(flag)
            chips.append(
                f'<span style="background:{look.fill}; color:{look.ink};">'
                f"&nbsp;{html.escape(chip_text(flag))}&nbsp;</span>"
            )
        risk = (
            f" \u00b7 risk {percent(item.risk)} ({html.escape(item.top_critical)})"
            if item.top_critical
            else ""
        )
        return "&nbsp; ".join(chips) + f"<small>{risk}</small>"

    @staticmethod
    def _suggestion_text(item: WorklistItem, suggestion: SuggestionInfo) -> str:
        number = item.suggestions.index(suggestion) + 1
        if suggestion.abstained:
            confidence = (
                f"abstained (insufficient confidence, {percent(probability_of(suggestion))})"
            )
        else:
            confidence = percent(probability_of(suggestion))
        critical = "  \u26a0 critical" if suggestion.id in item.critical_ids else ""
        decision = item.decision_for(suggestion.id)
        done = ""
        if decision is not None:
            past = {
                DecisionAction.ACCEPT: "\u2714 accepted",
                DecisionAction.OVERRIDE: "\u270e overridden",
                DecisionAction.REJECT: "\u2716 rejected",
            }[decision.action]
            done = f"\n     {past} by {decision.user}"
        return f"{number}. {suggestion.display} \u2014 {confidence}{critical}{done}"

    def _suggestion_row_changed(self, row: int) -> None:
        entry = self.suggestion_list.item(row) if row >= 0 else None
        self.selected_suggestion = entry.data(Qt.ItemDataRole.UserRole) if entry else None

    def choose_suggestion(self, number: int) -> None:
        """Choose the suggestion that A, O and R act on (0-based)."""
        if 0 <= number < self.suggestion_list.count():
            self.suggestion_list.setCurrentRow(number)

    def step_suggestion(self, step: int) -> None:
        count = self.suggestion_list.count()
        if count:
            row = max(0, min(count - 1, self.suggestion_list.currentRow() + step))
            self.suggestion_list.setCurrentRow(row)

    def chosen_suggestion(self) -> SuggestionInfo | None:
        item = self.current_item()
        if item is None:
            return None
        return next((s for s in item.suggestions if s.id == self.selected_suggestion), None)

    def _enable_actions(self, item: WorklistItem | None) -> None:
        writable = item is not None and not item.status.read_only and not self.busy
        has_suggestion = writable and item is not None and bool(item.suggestions)
        for button in (self.accept_button, self.override_button, self.reject_button):
            button.setEnabled(has_suggestion)
        self.sign_button.setEnabled(writable)
        self.open_button.setEnabled(item is not None)

    # -- decisions ------------------------------------------------------------------------------
    def _writable_choice(self) -> tuple[WorklistItem, SuggestionInfo] | None:
        item, suggestion = self.current_item(), self.chosen_suggestion()
        if item is None or suggestion is None or self.busy or self.dialog is not None:
            return None
        if item.status.read_only:
            self._say(f"Case {item.case_uid} is signed; amend it in the case workspace.")
            return None
        return item, suggestion

    def accept(self) -> None:
        """Accept the chosen suggestion of the current case."""
        choice = self._writable_choice()
        if choice is not None:
            item, suggestion = choice
            self._decide(item, suggestion, DecisionAction.ACCEPT, None, None)

    def override(self) -> OverrideDialog | None:
        """Ask for the diagnosis chosen instead and why; Enter confirms, Esc cancels."""
        choice = self._writable_choice()
        if choice is None:
            return None
        item, suggestion = choice
        dialog = OverrideDialog(suggestion, self)
        enter_confirms(dialog, dialog.code, dialog.display, dialog.reason)
        return self._open(
            dialog,
            lambda: self._decide(
                item,
                suggestion,
                DecisionAction.OVERRIDE,
                dialog.reason_text(),
                dialog.override(),
            ),
        )

    def reject(self) -> ReasonDialog | None:
        """Ask why the chosen suggestion is rejected; Enter confirms, Esc cancels."""
        choice = self._writable_choice()
        if choice is None:
            return None
        item, suggestion = choice
        dialog = ReasonDialog(
            "Reject suggestion",
            f"Why do you reject <b>{html.escape(suggestion.display)}</b> for case "
            f"{html.escape(item.case_uid)}?",
            "Reject",
            self,
        )
        enter_confirms(dialog, dialog.reason)
        return self._open(
            dialog,
            lambda: self._decide(item, suggestion, DecisionAction.REJECT, dialog.text(), None),
        )

    def sign(self) -> ReasonDialog | None:
        """Ask for the final impression, then the password again, then sign."""
        item = self.current_item()
        if item is None or self.busy or self.dialog is not None:
            return None
        if item.status.read_only:
            self._say(f"Case {item.case_uid} is already signed.")
            return None
        dialog = ReasonDialog(
            "Final impression",
            f"Your final impression for case <b>{html.escape(item.case_uid)}</b>; it is what "
            "you sign. Enter continues to the signature.",
            "Continue",
            self,
        )
        dialog.setObjectName("finalImpressionDialog")
        dialog.reason.setAccessibleName("Final impression")
        dialog.reason.setPlainText(self._draft_impression(item))
        dialog.reason.selectAll()
        enter_confirms(dialog, dialog.reason)
        return self._open(dialog, lambda: self._ask_signature(item, dialog.text()))

    def _ask_signature(self, item: WorklistItem, impression: str) -> None:
        dialog = SignDialog(impression, self.actor.username, self)
        enter_confirms(dialog, dialog.password)
        dialog.password.setFocus(Qt.FocusReason.OtherFocusReason)
        self._open(
            dialog, lambda: self._sign(item, impression, dialog.password.text()), replace=True
        )

    @staticmethod
    def _draft_impression(item: WorklistItem) -> str:
        """The accepted suggestions as a starting point for the clinician's own words."""
        accepted = [
            s.display
            for s in item.suggestions
            if (d := item.decision_for(s.id)) is not None and d.action is DecisionAction.ACCEPT
        ]
        return "; ".join(accepted)

    def _open(self, dialog: _D, on_accept: Callable[[], None], *, replace: bool = False) -> _D:
        if replace or self.dialog is None:
            self.dialog = dialog
        dialog.accepted.connect(on_accept)
        dialog.finished.connect(lambda _result: self._closed(dialog))
        dialog.open()
        dialog.activateWindow()  # typing goes to the dialog at once, not to the worklist
        return dialog

    def _closed(self, dialog: QDialog) -> None:
        if self.dialog is dialog:
            self.dialog = None
            # the keys go on working without a click: the worklist has the keyboard again
            self.window().activateWindow()
            self.table.setFocus(Qt.FocusReason.OtherFocusReason)
        dialog.deleteLater()

    def _decide(
        self,
        item: WorklistItem,
        suggestion: SuggestionInfo,
        action: DecisionAction,
        reason: str | None,
        override: tuple[str, str, str] | None,
    ) -> None:
        cases, uid = self.service.cases, item.case_uid
        past = {
            DecisionAction.ACCEPT: "Accepted",
            DecisionAction.OVERRIDE: "Overridden",
            DecisionAction.REJECT: "Rejected",
        }[action]
        self._write(
            item,
            lambda: cases.decide(
                self.actor, uid, suggestion.id, action, reason=reason, override=override
            ),
            f"{past} {suggestion.display} for case {uid}.",
            advance=True,
        )

    def _sign(self, item: WorklistItem, impression: str, password: str) -> None:
        service, uid = self.service, item.case_uid
        self._write(
            item,
            lambda: service.sign_with_password(self.actor, uid, impression, password),
            f"Case {uid} signed.",
            advance=True,
        )

    def _write(
        self, item: WorklistItem, action: Callable[[], object], done_text: str, *, advance: bool
    ) -> None:
        """Run ``action`` on the database writer, then fetch the case's row anew."""
        service, actor, uid = self.service, self.actor, item.case_uid

        def work() -> WorklistItem | None:
            action()
            return service.item(actor, uid)

        self.busy = True
        self._enable_actions(self.current_item())
        self._say("Saving\u2026")
        run_db_write(
            work,
            partial(_deliver_written, self, item, done_text, advance),
            partial(_deliver_write_error, self),
        )

    def _written(
        self, before: WorklistItem, done_text: str, advance: bool, after: WorklistItem | None
    ) -> None:
        self.busy = False
        row = self.model.row_of(before.case_uid)
        if row is not None and after is not None:
            self.model.replace_item(row, after)
            self.reviewed += int(after.reviewed) - int(before.reviewed)
            self._update_progress()
        self._say(done_text)
        self.statusMessage.emit(done_text)
        self.caseChanged.emit(before.case_uid)
        current = self.current_row()
        if advance and self.auto_advance.isChecked() and row is not None and current == row:
            self.advance_to_undecided(row)
        else:
            self._show_item(self.current_item())

    def _write_failed(self, exc: Exception) -> None:
        self.busy = False
        self._say("")
        self._enable_actions(self.current_item())
        show_error(self, exc)

    def open_current(self) -> None:
        item = self.current_item()
        if item is not None and self.dialog is None:
            self.openCase.emit(item.case_uid)

    def _say(self, text: str) -> None:
        colour = self.palette().color(QPalette.ColorRole.WindowText)
        if text.startswith("Case") and "signed;" in text:
            colour = status_colour(self.palette(), "warn")
        self.message.setStyleSheet(f"color: {colour.name()};")
        self.message.setText(text)


def _deliver_page(view: WorklistView, generation: int, page: WorklistPage) -> None:
    if shiboken6.isValid(view):  # the view may have closed while the page was fetched
        view._page_arrived(generation, page)


def _deliver_page_error(view: WorklistView, generation: int, exc: Exception) -> None:
    if shiboken6.isValid(view):
        view._page_failed(generation, exc)


def _deliver_written(
    view: WorklistView,
    before: WorklistItem,
    done_text: str,
    advance: bool,
    after: WorklistItem | None,
) -> None:
    if shiboken6.isValid(view):
        view._written(before, done_text, advance, after)


def _deliver_write_error(view: WorklistView, exc: Exception) -> None:
    if shiboken6.isValid(view):
        view._write_failed(exc)
