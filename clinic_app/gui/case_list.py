"""The case list: a paged Qt model over :meth:`CaseService.list_cases` and the widget around it.

The model reports every matching case as a row (``rowCount`` is the total), so the scroll bar
spans all of them, but holds only a few pages in memory (least recently used first out). A row
whose page is not loaded shows a placeholder and asks for that page in the background; when it
arrives, only that page's rows are repainted. Requests are deduplicated, at most one is in
flight, and while scrolling fast only the most recently wanted pages are fetched: every
``list_cases`` call writes an audit event, so pages nobody looks at are never requested. A
query change bumps a generation counter; a page that arrives for an older generation is
dropped.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import (
    QAbstractTableModel,
    QDate,
    QDateTime,
    QEvent,
    QLocale,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QRectF,
    Qt,
    QThreadPool,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QAction,
    QColor,
    QDragEnterEvent,
    QDragLeaveEvent,
    QDragMoveEvent,
    QDropEvent,
    QKeyEvent,
    QKeySequence,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QButtonGroup,
    QComboBox,
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from clinic_app.domain.cases import CasePage, CaseQuery, CaseSummary
from clinic_app.domain.errors import ClinicError
from clinic_app.domain.records import CaseStatus
from clinic_app.gui.dialogs import show_error
from clinic_app.gui.workers import run_db_write, run_in_background
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor

log = logging.getLogger(__name__)

#: What a row shows while its page is being fetched.
PLACEHOLDER = "\u2026"
#: The words every composite demo case carries wherever it is shown.
COMPOSITE_DEMO_TAG = "Composite demo case"
COMPOSITE_DEMO_TOOLTIP = (
    "Composite demo case: assembled from public data shipped with the app. "
    "It is not a real patient."
)
#: ``data(index, CASE_ROLE)`` is the row's CaseSummary, or None while its page loads.
CASE_ROLE = Qt.ItemDataRole.UserRole + 1
#: Pages wanted but not yet requested; older wishes are dropped (the view moved on).
MAX_WANTED_PAGES = 4
SEARCH_DEBOUNCE_MS = 250

STATUS_LABELS = {
    CaseStatus.NEW: "New",
    CaseStatus.ANALYSED: "Analysed",
    CaseStatus.IN_REVIEW: "In review",
    CaseStatus.SIGNED: "Signed",
    CaseStatus.AMENDED: "Amended (superseded)",
}
_NONE = "\u2014"


@dataclass(frozen=True)
class CaseColumn:
    """One column: its header, the CaseQuery sort key it maps to (None: not sortable), help."""

    title: str
    sort_key: str | None
    tooltip: str
    descending_first: bool = False


COLUMNS: tuple[CaseColumn, ...] = (
    CaseColumn("Case", "case_uid", "The case id (a random code; carries no patient data)"),
    CaseColumn("Patient", None, "The patient's pseudonym (never a name or record number)"),
    CaseColumn("Title", None, "What the case is about"),
    CaseColumn("Status", "status", "New, analysed, in review or signed"),
    CaseColumn("Top suggestion", None, "The model's highest-ranked suggestion, if analysed"),
    CaseColumn(
        "Priority (%)", "priority", "Triage priority from the last analysis", descending_first=True
    ),
    CaseColumn("Reviewer", None, "The clinician reviewing the case"),
    CaseColumn("Updated", "updated_at", "When the case last changed", descending_first=True),
)
PRIORITY_COLUMN = 5
UPDATED_COLUMN = 7


def column_for_sort_key(sort_key: str) -> int | None:
    """The column that sorts by ``sort_key`` (None for keys without a column, e.g. created_at)."""
    for number, column in enumerate(COLUMNS):
        if column.sort_key == sort_key:
            return number
    return None


def format_when(moment: datetime, locale: QLocale | None = None) -> str:
    """A stored (aware UTC) time as the user's local date and time, in their locale's format."""
    local = QDateTime.fromMSecsSinceEpoch(int(moment.timestamp() * 1000)).toLocalTime()
    locale = locale or QLocale()
    if locale.language() == QLocale.Language.C:  # no locale configured: unambiguous ISO order
        return local.toString("yyyy-MM-dd HH:mm")
    return locale.toString(local, QLocale.FormatType.ShortFormat)


def display_title(summary: CaseSummary) -> str:
    """The title as listed, tagged when the case is a composite demo case."""
    title = summary.title.strip() or "(untitled)"
    return f"[{COMPOSITE_DEMO_TAG}] {title}" if summary.is_composite_demo else title


def _display_row(summary: CaseSummary, locale: QLocale) -> tuple[str, ...]:
    priority = summary.priority
    return (
        summary.case_uid,
        summary.patient_pseudonym,
        display_title(summary),
        STATUS_LABELS.get(summary.status, str(summary.status)),
        summary.top_suggestion or _NONE,
        _NONE if priority is None else f"{max(0.0, min(1.0, priority)) * 100:.0f}",
        summary.reviewer or _NONE,
        format_when(summary.updated_at, locale),
    )


@dataclass(frozen=True)
class _Page:
    generation: int
    items: list[CaseSummary]
    display: list[tuple[str, ...]]


class CaseListModel(QAbstractTableModel):
    """All cases matching a CaseQuery as rows, fetched a page at a time in the background."""

    #: (rows, total_is_lower_bound) after the count is known or changes.
    countChanged = Signal(int, bool)
    #: True while a page request is in flight or waiting.
    loadingChanged = Signal(bool)
    #: A page could not be loaded (the exception); the page is not retried until refresh().
    loadFailed = Signal(object)
    #: A page (1-based number) arrived for the current query and is shown.
    pageLoaded = Signal(int)

    def __init__(
        self,
        service: CaseService,
        actor: Actor,
        *,
        page_size: int = 100,
        max_cached_pages: int = 40,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.service = service
        self.actor = actor
        self.page_size = page_size
        self.max_cached_pages = max(2, max_cached_pages)
        self._query = CaseQuery()
        self._generation = 0
        self._rows = 0
        self._count_known = False
        self._lower_bound = False
        self._pages: OrderedDict[int, _Page] = OrderedDict()
        self._wanted: OrderedDict[int, None] = OrderedDict()
        self._failed: set[int] = set()
        self._in_flight: tuple[int, int] | None = None
        self._loading = False
        self._locale = QLocale()
        #: list_cases calls made and stale pages dropped (for tests and the benchmark).
        self.requests_made = 0
        self.stale_pages_ignored = 0
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._pool.setObjectName("clinicfusion-case-list")
        self._dispatch_timer = QTimer(self)
        self._dispatch_timer.setSingleShot(True)
        self._dispatch_timer.setInterval(0)
        self._dispatch_timer.timeout.connect(self._dispatch)

    # -- query ---------------------------------------------------------------------------------
    @property
    def query(self) -> CaseQuery:
        return self._query

    @property
    def total_is_lower_bound(self) -> bool:
        """True when a search matched more cases than were counted ("more than 1,000")."""
        return self._lower_bound

    @property
    def count_known(self) -> bool:
        """Whether the first page of the current query has arrived (rowCount is meaningful)."""
        return self._count_known

    @property
    def loading(self) -> bool:
        return self._loading

    def set_query(self, query: CaseQuery) -> None:
        """Show the cases matching ``query`` (from the top); pages of the old query are dropped."""
        self._generation += 1
        self.beginResetModel()
        self._query = query
        self._rows = 0
        self._count_known = False
        self._lower_bound = False
        self._pages.clear()
        self._wanted.clear()
        self._failed.clear()
        self.endResetModel()
        self._request(1)

    def refresh(self) -> None:
        """Fetch again what is on screen (cases change elsewhere); rows shown stay until then."""
        self._generation += 1
        self._wanted.clear()
        self._failed.clear()
        self._request(1)
        if self._rows:
            self.dataChanged.emit(
                self.index(0, 0), self.index(self._rows - 1, len(COLUMNS) - 1), []
            )

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort by a sortable column (maps to CaseQuery.sort); other columns are ignored."""
        if not 0 <= column < len(COLUMNS):
            return
        key = COLUMNS[column].sort_key
        if key is None:
            return
        descending = order == Qt.SortOrder.DescendingOrder
        if key == self._query.sort and descending == self._query.descending and self._count_known:
            return
        self.set_query(replace(self._query, sort=key, descending=descending))

    def wait_for_background(self, timeout_ms: int = 30_000) -> bool:
        """Block until the page request in flight has finished (before closing the database)."""
        self._wanted.clear()
        return bool(self._pool.waitForDone(timeout_ms))

    # -- rows ----------------------------------------------------------------------------------
    def summary_at(self, row: int) -> CaseSummary | None:
        """The case on ``row`` if its page is loaded (never triggers a request)."""
        page = self._pages.get(row // self.page_size + 1)
        offset = row % self.page_size
        if page is None or offset >= len(page.items):
            return None
        return page.items[offset]

    def cached_pages(self) -> list[int]:
        """Page numbers in memory, least recently used first."""
        return list(self._pages)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self._rows

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def data(
        self,
        index: QModelIndex | QPersistentModelIndex,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        row, column = index.row(), index.column()
        if not index.isValid() or not 0 <= row < self._rows:
            return None
        number = row // self.page_size + 1
        page = self._pages.get(number)
        if page is None or page.generation != self._generation:
            self._request(number)
        offset = row % self.page_size
        if page is None or offset >= len(page.items):
            return self._placeholder(column, role)
        if role == Qt.ItemDataRole.DisplayRole:
            self._pages.move_to_end(number)
            return page.display[offset][column]
        summary = page.items[offset]
        if role == CASE_ROLE:
            return summary
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(summary, column, page.display[offset][column])
        if role == Qt.ItemDataRole.TextAlignmentRole and column == PRIORITY_COLUMN:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{COLUMNS[column].title}: {page.display[offset][column]}"
        return None

    def _placeholder(self, column: int, role: int) -> Any:
        if role == Qt.ItemDataRole.DisplayRole:
            return PLACEHOLDER if column == 0 else ""
        if role == Qt.ItemDataRole.ToolTipRole:
            return "Loading\u2026"
        if role == Qt.ItemDataRole.ForegroundRole:
            return QPalette().color(QPalette.ColorRole.PlaceholderText)
        return None

    @staticmethod
    def _tooltip(summary: CaseSummary, column: int, shown: str) -> str:
        if column == 2 and summary.is_composite_demo:
            return f"{summary.title}\n{COMPOSITE_DEMO_TOOLTIP}"
        if column == UPDATED_COLUMN:
            return (
                f"Updated {summary.updated_at:%Y-%m-%d %H:%M} UTC; "
                f"created {summary.created_at:%Y-%m-%d %H:%M} UTC"
            )
        if column == 0:
            return f"Case {summary.case_uid}, version {summary.version}"
        return shown

    def headerData(
        self,
        section: int,
        orientation: Qt.Orientation,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        column = COLUMNS[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return column.tooltip + (". Click to sort." if column.sort_key else "")
        if role == Qt.ItemDataRole.InitialSortOrderRole:
            first = column.descending_first
            return Qt.SortOrder.DescendingOrder if first else Qt.SortOrder.AscendingOrder
        return None

    # -- a search with more matches than counted grows as the user scrolls ----------------------
    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> bool:
        return not parent.isValid() and self._count_known and self._lower_bound

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex) -> None:
        if self.canFetchMore(parent):
            self._request(self._rows // self.page_size + 1)

    # -- fetching ------------------------------------------------------------------------------
    def _request(self, number: int) -> None:
        if number in self._failed or self._in_flight == (self._generation, number):
            return
        if number in self._wanted:
            self._wanted.move_to_end(number)
            return
        self._wanted[number] = None
        while len(self._wanted) > MAX_WANTED_PAGES:
            self._wanted.popitem(last=False)
        self._set_loading(True)
        if not self._dispatch_timer.isActive():
            self._dispatch_timer.start()

    def _dispatch(self) -> None:
        """Start the most recently wanted page, if none is in flight."""
        if self._in_flight is not None:
            return
        while self._wanted:
            number, _ = self._wanted.popitem(last=True)
            page = self._pages.get(number)
            if page is not None and page.generation == self._generation:
                continue
            beyond = (number - 1) * self.page_size >= max(self._rows, 1)
            if self._count_known and beyond and not self._lower_bound:
                continue
            generation, query, size = self._generation, self._query, self.page_size
            self._in_flight = (generation, number)
            self.requests_made += 1
            service, actor = self.service, self.actor
            run_in_background(
                partial(service.list_cases, actor, query, page=number, page_size=size),
                partial(_deliver, self, generation, number),
                partial(_deliver_error, self, generation, number),
                pool=self._pool,
            )
            return
        self._set_loading(False)

    def _set_loading(self, loading: bool) -> None:
        if loading != self._loading:
            self._loading = loading
            self.loadingChanged.emit(loading)

    def _page_arrived(self, generation: int, number: int, result: CasePage) -> None:
        self._in_flight = None
        if generation != self._generation:
            self.stale_pages_ignored += 1
            self._dispatch()
            return
        first_row = (number - 1) * self.page_size
        rows, lower_bound = self._count_from(number, result)
        count_changed = (rows, lower_bound) != (self._rows, self._lower_bound)
        if count_changed and self._count_known and not self._lower_bound:
            # Cases were added or removed meanwhile: other pages are shifted, fetch them anew.
            self._pages.clear()
        self._resize(rows)
        self._lower_bound = lower_bound
        first_count = not self._count_known
        self._count_known = True
        display = [_display_row(item, self._locale) for item in result.items]
        self._pages[number] = _Page(generation, list(result.items), display)
        self._pages.move_to_end(number)
        while len(self._pages) > self.max_cached_pages:
            self._pages.popitem(last=False)
        last_row = min(first_row + len(result.items), self._rows) - 1
        if last_row >= first_row:
            self.dataChanged.emit(
                self.index(first_row, 0), self.index(last_row, len(COLUMNS) - 1), []
            )
        if count_changed or first_count:
            self.countChanged.emit(self._rows, self._lower_bound)
        self.pageLoaded.emit(number)
        self._dispatch()

    def _count_from(self, number: int, result: CasePage) -> tuple[int, bool]:
        """Rows and whether that is a lower bound, after ``result`` (page ``number``)."""
        if not result.total_is_lower_bound:
            return result.total, False
        end = (number - 1) * self.page_size + len(result.items)
        if len(result.items) < self.page_size:
            return end, False  # this page ran past the last match: the exact count
        known = self._rows if self._lower_bound else 0
        return max(known, result.total, end), True

    def _resize(self, rows: int) -> None:
        if rows > self._rows:
            self.beginInsertRows(QModelIndex(), self._rows, rows - 1)
            self._rows = rows
            self.endInsertRows()
        elif rows < self._rows:
            self.beginRemoveRows(QModelIndex(), rows, self._rows - 1)
            self._rows = rows
            last_page = rows // self.page_size + 1
            for number in [n for n in self._pages if n > last_page]:
                del self._pages[number]
            self.endRemoveRows()

    def _page_failed(self, generation: int, number: int, exc: Exception) -> None:
        self._in_flight = None
        if generation == self._generation:
            self._failed.add(number)
            self.loadFailed.emit(exc)
        self._dispatch()


def _deliver(model: CaseListModel, generation: int, number: int, result: CasePage) -> None:
    if shiboken6.isValid(model):  # the view may have closed while the page was fetched
        model._page_arrived(generation, number, result)


def _deliver_error(model: CaseListModel, generation: int, number: int, exc: Exception) -> None:
    if shiboken6.isValid(model):
        model._page_failed(generation, number, exc)


# -- the widget -----------------------------------------------------------------------------------
def local_files(mime: QMimeData) -> list[Path]:
    """The local files a drag carries (empty when it carries anything else)."""
    if not mime.hasUrls():
        return []
    urls = mime.urls()
    if not urls or not all(url.isLocalFile() for url in urls):
        return []
    return [Path(url.toLocalFile()) for url in urls]


class CaseTable(QTableView):
    """The table; files dropped on a row go to that case, below the rows to a new case."""

    filesDropped = Signal(object, object)  # case_uid | None, list[Path]

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self._drop_row: int | None = None
        self._drop_on_empty = False

    def _target(self, position: QPoint) -> tuple[bool, str | None, int | None]:
        """(acceptable, case uid or None for a new case, row) for a drop at ``position``."""
        index = self.indexAt(position)
        if not index.isValid():
            return True, None, None
        summary = index.data(CASE_ROLE)
        if not isinstance(summary, CaseSummary):
            return False, None, None  # that row is still loading
        return True, summary.case_uid, index.row()

    def _track(self, event: QDragMoveEvent | QDragEnterEvent) -> None:
        if not local_files(event.mimeData()):
            event.ignore()
            return
        ok, _uid, row = self._target(event.position().toPoint())
        self._drop_row, self._drop_on_empty = row, ok and row is None
        self.viewport().update()
        if ok:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        self._track(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        self._track(event)

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self._drop_row, self._drop_on_empty = None, False
        self.viewport().update()
        event.accept()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = local_files(event.mimeData())
        ok, case_uid, _row = self._target(event.position().toPoint())
        self._drop_row, self._drop_on_empty = None, False
        self.viewport().update()
        if not paths or not ok:
            event.ignore()
            return
        event.acceptProposedAction()
        self.filesDropped.emit(case_uid, paths)

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if self._drop_row is None and not self._drop_on_empty:
            return
        painter = QPainter(self.viewport())
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pen = QPen(self.palette().color(QPalette.ColorRole.Highlight), 2)
        painter.setPen(pen)
        if self._drop_row is not None:
            top = self.rowViewportPosition(self._drop_row)
            height = self.rowHeight(self._drop_row)
            rect = self.viewport().rect().adjusted(1, 0, -1, 0)
            rect.setTop(top + 1)
            rect.setHeight(height - 2)
        else:
            rect = self.viewport().rect().adjusted(2, 2, -2, -2)
        painter.drawRoundedRect(rect, 3, 3)
        painter.end()


class CompositeDemoBadgeDelegate(QStyledItemDelegate):
    """Draws a composite demo case's title after an amber "Composite demo case" badge, so the
    tag stays visible however narrow the column (the text and tooltip carry it too)."""

    FILL, BORDER, INK = QColor("#fff3cd"), QColor("#e0c36a"), QColor("#664d03")

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        summary = index.data(CASE_ROLE)
        if not (isinstance(summary, CaseSummary) and summary.is_composite_demo):
            super().paint(painter, option, index)
            return
        item = QStyleOptionViewItem(option)
        self.initStyleOption(item, index)
        item.text = ""
        widget = item.widget
        style = widget.style() if widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, item, painter, widget)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        metrics = item.fontMetrics
        area = QRectF(item.rect).adjusted(4, 3, -4, -3)
        badge = QRectF(
            area.left(),
            area.top(),
            metrics.horizontalAdvance(COMPOSITE_DEMO_TAG) + 12,
            area.height(),
        )
        badge.setWidth(min(badge.width(), area.width()))
        painter.setPen(QPen(self.BORDER, 1))
        painter.setBrush(self.FILL)
        painter.drawRoundedRect(badge, 4, 4)
        painter.setPen(self.INK)
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, COMPOSITE_DEMO_TAG)
        rest = area.adjusted(badge.width() + 6, 0, 0, 0)
        if rest.width() > 0:
            selected = bool(item.state & QStyle.StateFlag.State_Selected)
            role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
            painter.setPen(item.palette.color(role))
            # the badge says it: the drawn title need not repeat "Composite demo case — "
            title = summary.title.strip().removeprefix(f"{COMPOSITE_DEMO_TAG} \u2014 ")
            title = title or "(untitled)"
            elided = metrics.elidedText(title, Qt.TextElideMode.ElideRight, int(rest.width()))
            painter.drawText(
                rest, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, elided
            )
        painter.restore()


_DATE_RANGES: tuple[tuple[str, int | None], ...] = (
    ("Any time", None),
    ("Created today", 0),
    ("Created in the last 7 days", 7),
    ("Created in the last 30 days", 30),
    ("Created in the last 12 months", 365),
    ("Created between\u2026", -1),
)


class CaseListView(QWidget):
    """Search, filters, the case table, the count and "New case…"; all DB calls off-thread."""

    caseActivated = Signal(str)
    filesDropped = Signal(object, object)  # case_uid | None (a new case), list[Path]
    newCaseRequested = Signal(dict)
    caseCreated = Signal(str)

    def __init__(
        self,
        service: CaseService,
        actor: Actor,
        *,
        on_new_case: Callable[[dict[str, Any]], None] | None = None,
        page_size: int = 100,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("caseListView")
        self.service = service
        self.actor = actor
        self._on_new_case = on_new_case
        self.model = CaseListModel(service, actor, page_size=page_size, parent=self)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(SEARCH_DEBOUNCE_MS)
        self._debounce.timeout.connect(self.apply_filters)
        self._error: str | None = None
        self._actions: list[tuple[QAction, str]] = []

        self.search = QLineEdit()
        self.search.setObjectName("caseSearch")
        self.search.setClearButtonEnabled(True)
        self.search.setPlaceholderText("Search case id, patient, title or suggestion")
        self.search.setAccessibleName("Search cases")
        self.search.setToolTip(
            "Each word must start a word of the case id, patient pseudonym, title or top "
            "suggestion: \u201catrial fib\u201d finds \u201cAtrial fibrillation\u201d."
        )
        self.search.textChanged.connect(self._debounce.start)

        self.status_filter = QComboBox()
        self.status_filter.setObjectName("statusFilter")
        self.status_filter.addItem("All statuses", None)
        for status, label in STATUS_LABELS.items():
            self.status_filter.addItem(label, status.value)
        self.status_filter.setAccessibleName("Status filter")
        self.status_filter.setToolTip("Show only cases with this status")
        self.status_filter.currentIndexChanged.connect(self.apply_filters)

        self.reviewer_filter = QComboBox()
        self.reviewer_filter.setObjectName("reviewerFilter")
        self.reviewer_filter.setEditable(True)
        self.reviewer_filter.addItem("")
        if actor.user_id is not None:
            self.reviewer_filter.addItem(actor.username)
        line = self.reviewer_filter.lineEdit()
        if line is not None:
            line.setPlaceholderText("Any reviewer")
            line.setClearButtonEnabled(True)
        self.reviewer_filter.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.reviewer_filter.setAccessibleName("Reviewer filter")
        self.reviewer_filter.setToolTip("Show only cases reviewed by this user name")
        self.reviewer_filter.currentTextChanged.connect(self._debounce.start)

        self.suggestion_filter = QLineEdit()
        self.suggestion_filter.setObjectName("suggestionFilter")
        self.suggestion_filter.setPlaceholderText("Any suggestion")
        self.suggestion_filter.setClearButtonEnabled(True)
        self.suggestion_filter.setAccessibleName("Suggestion filter")
        self.suggestion_filter.setToolTip("Show only cases whose top suggestion contains this text")
        self.suggestion_filter.textChanged.connect(self._debounce.start)

        self.date_filter = QComboBox()
        self.date_filter.setObjectName("dateFilter")
        for label, days in _DATE_RANGES:
            self.date_filter.addItem(label, days)
        self.date_filter.setAccessibleName("Creation date filter")
        self.date_filter.setToolTip("Show only cases created in this period")
        self.date_filter.currentIndexChanged.connect(self._date_range_changed)
        today = QDate.currentDate()
        self.date_from = QDateEdit(today.addMonths(-1))
        self.date_to = QDateEdit(today)
        for edit, name, what in (
            (self.date_from, "dateFrom", "First creation date (inclusive)"),
            (self.date_to, "dateTo", "Last creation date (inclusive)"),
        ):
            edit.setObjectName(name)
            edit.setCalendarPopup(True)
            edit.setAccessibleName(what)
            edit.setToolTip(what)
            edit.setVisible(False)
            edit.dateChanged.connect(self.apply_filters)

        self.count_label = QLabel("Loading cases\u2026")
        self.count_label.setObjectName("caseCount")
        self.count_label.setAccessibleName("Number of cases")
        self.count_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.new_case_button = QPushButton("New case\u2026")
        self.new_case_button.setObjectName("newCaseButton")
        self.new_case_button.setAccessibleName("New case")
        self.new_case_button.setToolTip(
            "Create a case for a new or known patient (Ctrl+N); or drop files below the list"
        )
        self.new_case_button.clicked.connect(self.new_case)

        self.table = CaseTable()
        self.table.setObjectName("caseTable")
        self.table.setAccessibleName("Cases")
        self.table.setToolTip("Double-click or press Enter to open a case; drop files on a case")
        self.table.setModel(self.model)
        self._title_delegate = CompositeDemoBadgeDelegate(self.table)
        self._configure_table()
        self.table.activated.connect(self._activated)
        self.table.filesDropped.connect(self.filesDropped)

        self.empty_hint = QLabel(
            "No cases match. Clear the search and filters, or create a case with "
            "\u201cNew case\u2026\u201d or by dropping files here."
        )
        self.empty_hint.setObjectName("emptyHint")
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setVisible(False)

        filters = QHBoxLayout()
        filters.addWidget(self.search, 3)
        filters.addWidget(self.status_filter, 1)
        filters.addWidget(self.reviewer_filter, 1)
        filters.addWidget(self.suggestion_filter, 1)
        filters.addWidget(self.date_filter, 1)
        filters.addWidget(self.date_from)
        filters.addWidget(self.date_to)
        footer = QHBoxLayout()
        footer.addWidget(self.count_label, 1)
        footer.addWidget(self.new_case_button)
        layout = QVBoxLayout(self)
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.empty_hint)
        layout.addLayout(footer)

        self.model.countChanged.connect(self._update_count)
        self.model.loadingChanged.connect(lambda _loading: self._update_count())
        self.model.loadFailed.connect(self._load_failed)
        self.setAcceptDrops(True)
        self._add_action("Ctrl+F", "Search cases", self._focus_search)
        self._add_action("Ctrl+N", "New case\u2026", self.new_case)
        self._add_action("F5", "Refresh the case list", self.refresh)
        self._shortcut_help = [
            ("Enter", "Open the selected case"),
            ("Esc", "Clear the search (in the search box)"),
        ]
        self.search.installEventFilter(self)
        self.model.set_query(CaseQuery())

    # -- set-up ----------------------------------------------------------------------------------
    def _configure_table(self) -> None:
        table = self.table
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setAlternatingRowColors(True)
        table.setWordWrap(False)
        table.setShowGrid(False)
        table.setTextElideMode(Qt.TextElideMode.ElideRight)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        rows = table.verticalHeader()
        rows.setVisible(False)
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # uniform rows: O(1) layout
        rows.setDefaultSectionSize(table.fontMetrics().height() + 10)
        header = table.horizontalHeader()
        header.setSectionsClickable(True)
        header.setSortIndicatorShown(True)
        header.setHighlightSections(False)
        header.setSortIndicator(UPDATED_COLUMN, Qt.SortOrder.DescendingOrder)
        header.sortIndicatorChanged.connect(self._sort_requested)
        metrics = table.fontMetrics()
        widths = {
            0: "C-WWWWWWWWWW",
            1: "P-WWWWWWWWWWWW",
            3: "In reviewW",
            4: "Adenocarcinoma of colonW",
            5: "Priority (%)",
            6: "reviewernameW",
            7: format_when(datetime(2000, 12, 28, 23, 59, tzinfo=UTC)) + "W",
        }
        for column, sample in widths.items():
            table.setColumnWidth(column, metrics.horizontalAdvance(sample) + 16)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(metrics.horizontalAdvance("Status") + 24)
        table.setItemDelegateForColumn(2, self._title_delegate)

    def _add_action(self, keys: str, text: str, slot: Callable[[], object]) -> None:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(keys))
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.triggered.connect(slot)
        self.addAction(action)
        self._actions.append((action, text))

    def shortcuts(self) -> list[tuple[str, str]]:
        """(key sequence, what it does) for Help."""
        listed = [
            (action.shortcut().toString(QKeySequence.SequenceFormat.NativeText), text)
            for action, text in self._actions
        ]
        return listed + self._shortcut_help

    # -- filters ---------------------------------------------------------------------------------
    def current_query(self) -> CaseQuery:
        """The CaseQuery the search box and filters describe (sorting as the model has it)."""
        value = self.status_filter.currentData()
        status = CaseStatus(value) if value else None
        created_from, created_to = self._date_bounds()
        sorting = self.model.query
        return CaseQuery(
            text=self.search.text().strip() or None,
            status=status,
            include_superseded=status == CaseStatus.AMENDED,
            created_from=created_from,
            created_to=created_to,
            suggestion=self.suggestion_filter.text().strip() or None,
            reviewer=self.reviewer_filter.currentText().strip().lower() or None,
            sort=sorting.sort,
            descending=sorting.descending,
        )

    def _date_bounds(self) -> tuple[datetime | None, datetime | None]:
        days = self.date_filter.currentData()
        if days is None:
            return None, None
        if days == -1:
            first, last = self.date_from.date(), self.date_to.date()
            start = _local_midnight(date(first.year(), first.month(), first.day()))
            end = _local_midnight(date(last.year(), last.month(), last.day()) + timedelta(days=1))
            return start, end
        today = date.today()
        return _local_midnight(today - timedelta(days=int(days))), None

    def _date_range_changed(self) -> None:
        custom = self.date_filter.currentData() == -1
        self.date_from.setVisible(custom)
        self.date_to.setVisible(custom)
        self.apply_filters()

    def apply_filters(self) -> None:
        """Run the search and filters now (typing runs it 250 ms after the last key)."""
        self._debounce.stop()
        query = self.current_query()
        if query != self.model.query:
            self._error = None
            self.model.set_query(query)
            self._update_count()

    def refresh(self) -> None:
        """Fetch the rows on screen and the count again."""
        self._error = None
        self.model.refresh()
        self._update_count()

    def _sort_requested(self, column: int, order: Qt.SortOrder) -> None:
        if COLUMNS[column].sort_key is None:
            current = column_for_sort_key(self.model.query.sort)
            header = self.table.horizontalHeader()
            header.blockSignals(True)
            if current is None:
                header.setSortIndicator(-1, Qt.SortOrder.DescendingOrder)
            else:
                descending = self.model.query.descending
                header.setSortIndicator(
                    current,
                    Qt.SortOrder.DescendingOrder if descending else Qt.SortOrder.AscendingOrder,
                )
            header.blockSignals(False)
            return
        self.model.sort(column, order)
        self._update_count()

    def _focus_search(self) -> None:
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (
            watched is self.search
            and event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Escape
            and self.search.text()
        ):
            self.search.clear()
            self.apply_filters()
            return True
        return super().eventFilter(watched, event)

    # -- count, errors ---------------------------------------------------------------------------
    def _update_count(self, *_args: object) -> None:
        model = self.model
        palette_text = self.palette().color(QPalette.ColorRole.WindowText)
        if self._error is not None:
            self.count_label.setStyleSheet(f"color: {_error_colour(self).name()};")
            self.count_label.setText(self._error)
            self.empty_hint.setVisible(False)
            return
        self.count_label.setStyleSheet(f"color: {palette_text.name()};")
        if not model.count_known:
            searching = model.query != CaseQuery() and model.query.text is not None
            self.count_label.setText("Searching\u2026" if searching else "Loading cases\u2026")
            self.empty_hint.setVisible(False)
            return
        rows = model.rowCount()
        if model.total_is_lower_bound:
            text = f"more than {max(rows - 1, 0):,} matches"
        else:
            text = f"{rows:,} case" + ("" if rows == 1 else "s")
        if model.loading:
            text += " \u2014 loading\u2026"
        self.count_label.setText(text)
        self.empty_hint.setVisible(rows == 0)

    def _load_failed(self, exc: object) -> None:
        what = str(exc) if isinstance(exc, ClinicError) else "see the log file for details"
        self._error = f"The case list could not be loaded: {what} Press F5 to try again."
        log.warning("Case list page failed: %s", exc)
        self._update_count()

    # -- actions ---------------------------------------------------------------------------------
    def selected_case_uid(self) -> str | None:
        index = self.table.currentIndex()
        summary = index.data(CASE_ROLE) if index.isValid() else None
        return summary.case_uid if isinstance(summary, CaseSummary) else None

    def _activated(self, index: QModelIndex) -> None:
        summary = index.data(CASE_ROLE)
        if isinstance(summary, CaseSummary):
            self.caseActivated.emit(summary.case_uid)

    def new_case(self) -> NewCaseDialog:
        """Ask for a new case's details; on OK emit newCaseRequested (and call on_new_case)."""
        dialog = NewCaseDialog(self)
        dialog.accepted.connect(lambda: self._new_case_accepted(dialog.values()))
        dialog.open()
        return dialog

    def _new_case_accepted(self, details: dict[str, Any]) -> None:
        self.newCaseRequested.emit(details)
        if self._on_new_case is not None:
            self._on_new_case(details)

    def create_case(self, details: dict[str, Any]) -> None:
        """Create the case through the service on the DB writer; then refresh, emit caseCreated."""

        def done(summary: CaseSummary) -> None:
            self.refresh()
            self.caseCreated.emit(summary.case_uid)

        service, actor = self.service, self.actor
        run_db_write(
            lambda: service.create_case(actor, **details), done, lambda exc: show_error(self, exc)
        )

    # -- drops outside the table: a new case -----------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        _accept_files(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        _accept_files(event)

    def dropEvent(self, event: QDropEvent) -> None:
        paths = local_files(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.filesDropped.emit(None, paths)


def _accept_files(event: QDragEnterEvent | QDragMoveEvent) -> None:
    if local_files(event.mimeData()):
        event.acceptProposedAction()
    else:
        event.ignore()


def _local_midnight(day: date) -> datetime:
    """The start of ``day`` on this computer's clock, as an aware UTC time."""
    return datetime.combine(day, time()).astimezone().astimezone(UTC)


def _error_colour(widget: QWidget) -> QColor:
    """A red that reads on the widget's background (light or dark theme)."""
    dark = widget.palette().color(QPalette.ColorRole.Window).lightness() < 128
    return QColor("#ff8a80" if dark else "#b3261e")


# -- new case -------------------------------------------------------------------------------------
SEX_CHOICES: tuple[tuple[str, str | None], ...] = (
    ("Not recorded", None),
    ("Female", "female"),
    ("Male", "male"),
    ("Other", "other"),
)


class NewCaseDialog(QDialog):
    """Title and patient (new, or known by pseudonym) of a new case."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New case")
        self.setObjectName("newCaseDialog")
        self.setMinimumWidth(440)
        self.title_edit = QLineEdit()
        self.title_edit.setObjectName("newCaseTitle")
        self.title_edit.setPlaceholderText("e.g. Palpitations, ECG and colon biopsy")
        self.title_edit.setMaxLength(200)
        self.title_edit.setAccessibleName("Case title")
        self.title_edit.setToolTip("What the case is about (no names or record numbers)")

        self.new_patient = QRadioButton("New patient")
        self.new_patient.setObjectName("newPatient")
        self.new_patient.setChecked(True)
        self.existing_patient = QRadioButton("Known patient, pseudonym:")
        self.existing_patient.setObjectName("existingPatient")
        for button, text in (
            (self.new_patient, "Register a new patient with a random pseudonym"),
            (self.existing_patient, "Add the case to a patient already in the database"),
        ):
            button.setAccessibleName(button.text())
            button.setToolTip(text)
        group = QButtonGroup(self)
        group.addButton(self.new_patient)
        group.addButton(self.existing_patient)
        self.pseudonym_edit = QLineEdit()
        self.pseudonym_edit.setObjectName("patientPseudonym")
        self.pseudonym_edit.setPlaceholderText("P-\u2026")
        self.pseudonym_edit.setAccessibleName("Patient pseudonym")
        self.pseudonym_edit.setToolTip("The known patient's pseudonym, e.g. P-7KQ2M9XW4TAB")
        self.pseudonym_edit.setEnabled(False)

        current_year = date.today().year
        self.birth_year = QSpinBox()
        self.birth_year.setObjectName("birthYear")
        self.birth_year.setRange(1879, current_year)
        self.birth_year.setSpecialValueText("Not recorded")
        self.birth_year.setValue(1879)
        self.birth_year.setAccessibleName("Birth year")
        self.birth_year.setToolTip("Year of birth only (no full date of birth is kept)")
        self.sex = QComboBox()
        self.sex.setObjectName("patientSex")
        for label, value in SEX_CHOICES:
            self.sex.addItem(label, value)
        self.sex.setAccessibleName("Sex")
        self.sex.setToolTip("Sex as recorded for the patient")
        self.existing_patient.toggled.connect(self._patient_kind_changed)

        self.error_label = QLabel()
        self.error_label.setObjectName("newCaseError")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(f"color: {_error_colour(self).name()};")
        self.error_label.setVisible(False)

        form = QFormLayout()
        form.addRow("Title:", self.title_edit)
        form.addRow(self.new_patient)
        patient_row = QHBoxLayout()
        patient_row.addWidget(self.existing_patient)
        patient_row.addWidget(self.pseudonym_edit, 1)
        form.addRow(patient_row)
        form.addRow("Birth year:", self.birth_year)
        form.addRow("Sex:", self.sex)
        note = QLabel(
            "<small>Do not type names or record numbers: ClinicFusion keeps "
            "pseudonyms only.</small>"
        )
        note.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText("Create case")
        ok.setObjectName("createCaseButton")
        ok.setToolTip("Create the case")
        buttons.accepted.connect(self._accept_if_valid)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)

    def _patient_kind_changed(self, existing: bool) -> None:
        self.pseudonym_edit.setEnabled(existing)
        self.birth_year.setEnabled(not existing)
        self.sex.setEnabled(not existing)
        if existing:
            self.pseudonym_edit.setFocus()

    def values(self) -> dict[str, Any]:
        """Keyword arguments for CaseService.create_case."""
        existing = self.existing_patient.isChecked()
        year = self.birth_year.value()
        return {
            "title": self.title_edit.text().strip(),
            "patient_pseudonym": self.pseudonym_edit.text().strip() if existing else None,
            "birth_year": None if existing or year == self.birth_year.minimum() else year,
            "sex": None if existing else self.sex.currentData(),
        }

    def _accept_if_valid(self) -> None:
        if self.existing_patient.isChecked() and not self.pseudonym_edit.text().strip():
            self.error_label.setText("Type the known patient's pseudonym, or choose New patient.")
            self.error_label.setVisible(True)
            self.pseudonym_edit.setFocus()
            return
        self.accept()
