"""Small pieces the administration dialogs share: status lines, actions, time formatting."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Generic, TypeVar

import shiboken6
from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QSize,
    Qt,
)
from PySide6.QtGui import QAction, QKeySequence, QResizeEvent
from PySide6.QtWidgets import QApplication, QLabel, QTableView, QWidget

from clinic_app.gui.theme import status_colour
from clinic_app.gui.workers import run_db_write, run_in_background

W = TypeVar("W", bound=QWidget)
T = TypeVar("T")


class WrappedLabel(QLabel):
    """A word-wrapped label that asks for the height its text needs at its actual width.

    A plain wrapped QLabel reports a size hint for a narrow guessed width, so a form reserves
    two or three lines for one line of text (or clips a long one)."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)
        self._hinted_width = -1

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        if self.width() > 50:
            return QSize(hint.width(), self.heightForWidth(self.width()))
        return hint

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        if self.width() > 50:
            return QSize(hint.width(), self.heightForWidth(self.width()))
        return hint

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().width() != self._hinted_width:
            self._hinted_width = event.size().width()
            self.updateGeometry()

    def setText(self, text: str) -> None:
        super().setText(text)
        self.updateGeometry()


class StatusLabel(WrappedLabel):
    """A one-line outcome ("ok", "warn", "error" or plain) whose colour follows the theme."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.kind: str | None = None
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    def show_status(self, text: str, kind: str | None = None) -> None:
        self.kind = kind
        self.setText(text)
        self._recolour()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.ApplicationPaletteChange:
            self._recolour()

    def _recolour(self) -> None:
        if self.kind is None:
            self.setStyleSheet("")
        else:
            colour = status_colour(QApplication.palette(), self.kind).name()
            self.setStyleSheet(f"QLabel {{ color: {colour}; }}")


def add_action(
    widget: QWidget,
    text: str,
    shortcut: QKeySequence | QKeySequence.StandardKey | str,
    tip: str,
    slot: Callable[[], object],
    shortcuts: list[tuple[str, str]],
) -> QAction:
    """An action on ``widget`` with a shortcut, listed in ``shortcuts`` for the Help page."""
    action = QAction(text, widget)
    sequence = shortcut if isinstance(shortcut, QKeySequence) else QKeySequence(shortcut)
    action.setShortcut(sequence)
    action.setToolTip(f"{tip} ({sequence.toString(QKeySequence.SequenceFormat.NativeText)})")
    action.triggered.connect(lambda _checked=False: slot())
    widget.addAction(action)
    shortcuts.append((sequence.toString(QKeySequence.SequenceFormat.NativeText), tip))
    return action


def local_time(moment: datetime | None) -> str:
    """An aware time as this computer's local time, to the second (unambiguous in any locale)."""
    if moment is None:
        return "\u2014"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def named(widget: W, object_name: str) -> W:
    """``widget`` with its objectName set (how tests and the main window find key widgets)."""
    widget.setObjectName(object_name)
    return widget


def compact_rows(table: QTableView) -> None:
    """Rows one line of text high (the style's default wastes a third of the space)."""
    header = table.verticalHeader()
    header.setVisible(False)
    height = table.fontMetrics().height() + 8
    header.setMinimumSectionSize(height)
    header.setDefaultSectionSize(height)
    table.horizontalHeader().setStyleSheet("QHeaderView::section { padding: 2px 10px; }")


def while_alive(widget: QWidget, callback: Callable[[T], None]) -> Callable[[T], None]:
    """``callback``, skipped once ``widget`` is gone: a background result may arrive after the
    dialog that asked for it was closed and deleted."""

    def call(value: T) -> None:
        if shiboken6.isValid(widget):
            callback(value)

    return call


def background_for(
    widget: QWidget,
    fn: Callable[[], Any],
    on_done: Callable[[Any], None],
    on_error: Callable[[Exception], None],
) -> None:
    """run_in_background, reporting to ``widget`` only while it exists."""
    run_in_background(fn, while_alive(widget, on_done), while_alive(widget, on_error))


def db_write_for(
    widget: QWidget,
    fn: Callable[[], Any],
    on_done: Callable[[Any], None],
    on_error: Callable[[Exception], None],
) -> None:
    """run_db_write (the single writer thread), reporting to ``widget`` only while it exists."""
    run_db_write(fn, while_alive(widget, on_done), while_alive(widget, on_error))


ModelIndex = QModelIndex | QPersistentModelIndex
Row = TypeVar("Row")


class RowTableModel(QAbstractTableModel, Generic[Row]):
    """A read-only table of plain values, one per row, under fixed column headings.

    Subclasses set ``COLUMNS`` and implement ``data``; the rows are replaced as a whole."""

    COLUMNS: tuple[str, ...] = ()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[Row] = []

    def replace_rows(self, rows: Iterable[Row]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None
