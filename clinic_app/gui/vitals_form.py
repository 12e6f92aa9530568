"""Vital signs and demographics of the case: typed as text with their units, checked inline.

The form collects strings (and the temperature unit) and emits ``saveRequested(dict)``; the
lead wires it to ``services.vitals.record_vitals``, which converts units and checks ranges
again (the service is the authority; the inline checks here only save a round trip). Keys:
``heart_rate_bpm``, ``systolic_mmhg``, ``diastolic_mmhg``, ``spo2_percent``, ``temperature_c``
(a number in the unit of ``temperature_unit``: "°C" or "°F"), ``respiratory_rate_per_min`` and
``measured_at`` (ISO 8601 with the workstation's UTC offset).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PySide6.QtCore import QDateTime, Qt, Signal
from PySide6.QtGui import QAction, QColor, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateTimeEdit,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from clinic_app.domain.cases import CaseDetail
from clinic_app.domain.signals import VITAL_RANGES

CELSIUS = "°C"
FAHRENHEIT = "°F"
_NUMBER = re.compile(r"^\s*[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)\s*$")


@dataclass(frozen=True)
class VitalRow:
    """One input of the form: key, label, unit shown and accepted range (stored units)."""

    key: str
    label: str
    unit: str
    low: float
    high: float
    placeholder: str
    short: str  # column heading of the history table


def _row(key: str, label: str, unit: str, placeholder: str, short: str) -> VitalRow:
    _, low, high = VITAL_RANGES[key]
    return VitalRow(key, label, unit, low, high, placeholder, short)


ROWS: tuple[VitalRow, ...] = (
    _row("heart_rate_bpm", "Heart rate", "bpm", "e.g. 72", "HR"),
    _row("systolic_mmhg", "Systolic BP", "mmHg", "e.g. 120", "Sys"),
    _row("diastolic_mmhg", "Diastolic BP", "mmHg", "e.g. 80", "Dia"),
    _row("spo2_percent", "SpO\u2082", "%", "e.g. 97", "SpO\u2082"),
    _row("temperature_c", "Temperature", CELSIUS, "e.g. 37.0", "Temp"),
    _row("respiratory_rate_per_min", "Respiratory rate", "/min", "e.g. 16", "RR"),
)
ROWS_BY_KEY = {row.key: row for row in ROWS}


def celsius_to_fahrenheit(value: float) -> float:
    return value * 9.0 / 5.0 + 32.0


def accepted_range(row: VitalRow, temperature_unit: str = CELSIUS) -> tuple[float, float, str]:
    """The range the form accepts for ``row`` in the unit shown to the user."""
    if row.key == "temperature_c" and temperature_unit == FAHRENHEIT:
        return celsius_to_fahrenheit(row.low), celsius_to_fahrenheit(row.high), FAHRENHEIT
    return row.low, row.high, row.unit


def check_value(row: VitalRow, text: str, temperature_unit: str = CELSIUS) -> str | None:
    """The problem with one typed value (None when fine or empty): a sentence naming the field."""
    text = text.strip()
    if not text:
        return None
    low, high, unit = accepted_range(row, temperature_unit)
    if not _NUMBER.match(text):
        return (
            f"{row.label}: \u2018{text}\u2019 is not a number; enter {low:g}\u2013{high:g} {unit}."
        )
    value = float(text.replace(",", "."))
    if not low <= value <= high:
        hint = ""
        if row.key == "temperature_c":
            other = FAHRENHEIT if temperature_unit == CELSIUS else CELSIUS
            other_low, other_high, _ = accepted_range(row, other)
            if other_low <= value <= other_high:
                hint = f" Is it in {other}? Change the unit."
        return (
            f"{row.label}: {value:g} {unit} is outside {low:g}\u2013{high:g} {unit}; "
            f"check the value and its unit.{hint}"
        )
    return None


def _age(birth_year: int | None) -> str:
    if birth_year is None:
        return "not recorded"
    years = datetime.now().year - birth_year
    return f"born {birth_year} (about {years} years)"


def _format_when(moment: Any) -> str:
    if not isinstance(moment, datetime):
        return "\u2014"
    local = moment.astimezone() if moment.tzinfo else moment
    return local.strftime("%d %b %Y %H:%M").lstrip("0")


def _format_value(value: Any) -> str:
    if value is None:
        return "\u2014"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _error_colour(palette: QPalette) -> QColor:
    """A red that reads on the window colour of light and dark palettes."""
    dark = palette.color(QPalette.ColorRole.Window).lightness() < 128
    return QColor("#ff8a80") if dark else QColor("#b02a37")


class VitalsForm(QWidget):
    """Heart rate, blood pressure, SpO2, temperature (°C/°F), respiratory rate and when they
    were measured; the patient's birth year and sex (read-only); the latest and earlier sets.

    Signals: ``saveRequested(dict[str, str])`` with the typed values (see the module doc)."""

    saveRequested = Signal(dict)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("vitalsForm")
        self._read_only = False

        self.demographics = QLabel("No case open")
        self.demographics.setObjectName("vitalsDemographics")
        self.demographics.setAccessibleName("Patient demographics")
        self.demographics.setToolTip(
            "Recorded with the patient (pseudonymous); birth year only, never the full date"
        )
        self.demographics.setWordWrap(True)
        self.demographics.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.inputs: dict[str, QLineEdit] = {}
        self.range_labels: dict[str, QLabel] = {}
        self.error_labels: dict[str, QLabel] = {}
        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(2)
        grid.addWidget(_muted(QLabel("Accepted")), 0, 3)
        line = 1
        for row in ROWS:
            edit = QLineEdit()
            edit.setObjectName(f"vitals_{row.key}")
            edit.setAccessibleName(row.label)
            edit.setPlaceholderText(row.placeholder)
            edit.setMaximumWidth(110)
            edit.setAlignment(Qt.AlignmentFlag.AlignRight)
            edit.textChanged.connect(lambda _text, key=row.key: self._check(key))
            label = QLabel(f"{row.label}:")
            label.setBuddy(edit)
            grid.addWidget(label, line, 0)
            grid.addWidget(edit, line, 1)
            if row.key == "temperature_c":
                self.temperature_unit = QComboBox()
                self.temperature_unit.setObjectName("vitalsTemperatureUnit")
                self.temperature_unit.setAccessibleName("Temperature unit")
                self.temperature_unit.setToolTip(
                    "The unit the temperature was measured in; it is stored in \u00b0C"
                )
                self.temperature_unit.addItems([CELSIUS, FAHRENHEIT])
                self.temperature_unit.currentTextChanged.connect(self._unit_changed)
                grid.addWidget(self.temperature_unit, line, 2)
            else:
                grid.addWidget(QLabel(row.unit), line, 2)
            hint = _muted(QLabel())
            hint.setObjectName(f"vitals_{row.key}_range")
            grid.addWidget(hint, line, 3)
            error = QLabel()
            error.setObjectName(f"vitals_{row.key}_error")
            error.setWordWrap(True)
            error.setAccessibleName(f"{row.label} problem")
            error.hide()
            grid.addWidget(error, line + 1, 0, 1, 4)
            self.inputs[row.key] = edit
            self.range_labels[row.key] = hint
            self.error_labels[row.key] = error
            line += 2
        grid.setColumnStretch(3, 1)

        self.measured_at = QDateTimeEdit(QDateTime.currentDateTime())
        self.measured_at.setObjectName("vitalsMeasuredAt")
        self.measured_at.setAccessibleName("Measured at")
        self.measured_at.setToolTip("When the vital signs were measured (local time)")
        self.measured_at.setCalendarPopup(True)
        self.measured_at.setDisplayFormat("dd MMM yyyy HH:mm")
        self.measured_at.setMaximumDateTime(QDateTime.currentDateTime().addSecs(300))
        self.now_button = QPushButton("Now")
        self.now_button.setObjectName("vitalsNowButton")
        self.now_button.setAccessibleName("Set measured time to now")
        self.now_button.setToolTip("Set the measurement time to now")
        self.now_button.clicked.connect(self._set_now)
        when = QHBoxLayout()
        when.addWidget(QLabel("Measured at:"))
        when.addWidget(self.measured_at)
        when.addWidget(self.now_button)
        when.addStretch(1)

        self.form_error = QLabel()
        self.form_error.setObjectName("vitalsFormError")
        self.form_error.setWordWrap(True)
        self.form_error.hide()
        self.save_button = QPushButton("Save vital signs")
        self.save_button.setObjectName("vitalsSaveButton")
        self.save_button.setAccessibleName("Save vital signs")
        self.save_button.setToolTip("Check and save these vital signs with the case (Ctrl+Shift+S)")
        self.save_button.clicked.connect(self.save)
        self.save_action = QAction("Save vital signs", self)
        self.save_action.setShortcut(QKeySequence("Ctrl+Shift+S"))
        self.save_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.save_action.triggered.connect(self.save)
        self.addAction(self.save_action)
        buttons = QHBoxLayout()
        buttons.addWidget(self.form_error, 1)
        buttons.addStretch(0)
        buttons.addWidget(self.save_button)

        self.latest = QLabel("No vital signs recorded yet.")
        self.latest.setObjectName("vitalsLatest")
        self.latest.setAccessibleName("Latest vital signs")
        self.latest.setWordWrap(True)
        self.history = QTableWidget(0, len(ROWS) + 1)
        self.history.setObjectName("vitalsHistory")
        self.history.setAccessibleName("Earlier vital signs")
        self.history.setToolTip("Every set of vital signs recorded for this case, newest first")
        self.history.setHorizontalHeaderLabels(
            ["Measured"] + [f"{r.short} ({r.unit})" for r in ROWS]
        )
        for column, row in enumerate(ROWS, start=1):
            header_item = self.history.horizontalHeaderItem(column)
            if header_item is not None:
                header_item.setToolTip(f"{row.label} ({row.unit})")
        self.history.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.history.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.history.verticalHeader().hide()
        header = self.history.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setMinimumSectionSize(48)
        self.history.setAlternatingRowColors(True)
        self.history.setMinimumHeight(90)

        patient_box = QGroupBox("Patient")
        patient_layout = QFormLayout(patient_box)
        patient_layout.addRow(self.demographics)
        entry_box = QGroupBox("New vital signs")
        self.entry_box = entry_box
        entry_layout = QVBoxLayout(entry_box)
        entry_layout.addLayout(grid)
        entry_layout.addLayout(when)
        entry_layout.addLayout(buttons)
        recorded_box = QGroupBox("Recorded")
        self.recorded_box = recorded_box
        recorded_layout = QVBoxLayout(recorded_box)
        recorded_layout.addWidget(self.latest)
        recorded_layout.addWidget(self.history, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(patient_box)
        layout.addWidget(entry_box)
        layout.addWidget(recorded_box, 1)
        self._unit_changed(CELSIUS)

    # -- public API -----------------------------------------------------------------------------
    def set_case(self, detail: CaseDetail | None, read_only: bool = False) -> None:
        """Show the case's demographics and recorded vitals (read-only for signed cases)."""
        if detail is None:
            self.demographics.setText("No case open")
            self.set_vitals([])
            self.set_read_only(True)
            return
        summary = detail.summary
        self.set_demographics(
            summary.patient_pseudonym,
            getattr(summary, "birth_year", getattr(detail, "birth_year", None)),
            getattr(summary, "sex", getattr(detail, "sex", None)),
        )
        self.set_vitals(list(detail.vitals))
        self.set_read_only(read_only or summary.status.read_only)

    def set_demographics(self, pseudonym: str, birth_year: int | None, sex: str | None) -> None:
        """Patient pseudonym, birth year / age and sex, as recorded (read-only here)."""
        self.demographics.setText(
            f"<b>{html.escape(pseudonym)}</b> \u00b7 {html.escape(_age(birth_year))} \u00b7 "
            f"sex: {html.escape(sex or 'not recorded')}"
        )

    def set_vitals(self, vitals: list[dict[str, Any]]) -> None:
        """The recorded sets: the latest in words, all of them in the table (newest first)."""
        ordered = sorted(
            vitals,
            key=lambda v: (
                v.get("measured_at") is not None,
                v.get("measured_at") or datetime.min,
            ),
            reverse=True,
        )
        self.history.setRowCount(len(ordered))
        for index, record in enumerate(ordered):
            cells = [_format_when(record.get("measured_at"))]
            cells += [_format_value(record.get(row.key)) for row in ROWS]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.history.setItem(index, column, item)
        if not ordered:
            self.latest.setText("No vital signs recorded yet.")
            return
        latest = ordered[0]
        parts = []
        for row in ROWS:
            value = latest.get(row.key)
            if value is None:
                continue
            if row.key == "systolic_mmhg" and latest.get("diastolic_mmhg") is not None:
                parts.append(f"BP {value:g}/{latest['diastolic_mmhg']:g} mmHg")
            elif row.key == "diastolic_mmhg" and latest.get("systolic_mmhg") is not None:
                continue
            else:
                parts.append(f"{row.label} {value:g} {row.unit}")
        self.latest.setText(
            f"<b>Latest</b> ({html.escape(_format_when(latest.get('measured_at')))}): "
            + html.escape(" \u00b7 ".join(parts) or "no values")
        )

    def set_read_only(self, read_only: bool) -> None:
        """Signed cases: the recorded vitals stay visible, no new ones can be entered."""
        self._read_only = read_only
        for edit in self.inputs.values():
            edit.setReadOnly(read_only)
        for widget in (self.temperature_unit, self.measured_at, self.now_button):
            widget.setEnabled(not read_only)
        self.save_button.setEnabled(not read_only)
        self.save_action.setEnabled(not read_only)
        # A signed case takes no new vitals: the entry form goes, the record stays.
        self.entry_box.setVisible(not read_only)
        self.recorded_box.setTitle(
            "Recorded" + (" \u2014 read-only: the case is signed" if read_only else "")
        )

    def values(self) -> dict[str, str]:
        """The form as the service reads it (empty fields left out)."""
        values = {key: edit.text().strip() for key, edit in self.inputs.items()}
        values = {key: text for key, text in values.items() if text}
        if "temperature_c" in values:
            values["temperature_unit"] = self.temperature_unit.currentText()
        measured = self.measured_at.dateTime().toPython()
        assert isinstance(measured, datetime)
        values["measured_at"] = measured.astimezone().isoformat(timespec="minutes")
        return values

    def problems(self) -> dict[str, str]:
        """What the inline checks find wrong, by field key."""
        unit = self.temperature_unit.currentText()
        found = {}
        for key, edit in self.inputs.items():
            problem = check_value(ROWS_BY_KEY[key], edit.text(), unit)
            if problem:
                found[key] = problem
        systolic = self._number("systolic_mmhg")
        diastolic = self._number("diastolic_mmhg")
        if (
            systolic is not None
            and diastolic is not None
            and "diastolic_mmhg" not in found
            and diastolic >= systolic
        ):
            found["diastolic_mmhg"] = (
                f"Diastolic BP: {diastolic:g} mmHg must be below the systolic "
                f"pressure ({systolic:g} mmHg)."
            )
        return found

    def save(self) -> None:
        """Check the form; emit saveRequested when nothing is wrong, else mark the fields."""
        if self._read_only:
            return
        problems = self.problems()
        self.show_errors(problems)
        if problems:
            first = next(key for key in self.inputs if key in problems)
            self.inputs[first].setFocus()
            return
        values = self.values()
        if not any(key in values for key in self.inputs):
            self._show_form_error("Enter at least one vital sign.")
            return
        self.saveRequested.emit(values)

    def show_errors(self, errors: Mapping[str, str]) -> None:
        """Mark fields as wrong (from the inline checks or the service's VitalsInputError:
        ``{key: str(error)}``); an error not tied to a shown field goes under the form."""
        for key, label in self.error_labels.items():
            message = errors.get(key)
            label.setText(f"\u26a0 {message}" if message else "")
            label.setVisible(bool(message))
            self._mark(self.inputs[key], bool(message))
        other = [str(m) for k, m in errors.items() if k not in self.error_labels]
        self._show_form_error(" ".join(other))

    def clear_entry(self) -> None:
        """Empty the inputs after a successful save (the lead calls it)."""
        for edit in self.inputs.values():
            edit.clear()
        self._set_now()
        self.show_errors({})

    def shortcuts(self) -> list[tuple[str, str]]:
        return [("Ctrl+Shift+S", "Save the vital signs typed in the form")]

    # -- internals ------------------------------------------------------------------------------
    def _number(self, key: str) -> float | None:
        text = self.inputs[key].text().strip()
        return float(text.replace(",", ".")) if _NUMBER.match(text) else None

    def _check(self, key: str) -> None:
        problem = check_value(
            ROWS_BY_KEY[key], self.inputs[key].text(), self.temperature_unit.currentText()
        )
        label = self.error_labels[key]
        label.setText(f"\u26a0 {problem}" if problem else "")
        label.setVisible(bool(problem))
        self._mark(self.inputs[key], bool(problem))

    def _mark(self, edit: QLineEdit, wrong: bool) -> None:
        colour = _error_colour(self.palette()).name()
        edit.setStyleSheet(f"QLineEdit {{ border: 2px solid {colour}; }}" if wrong else "")
        label = self.error_labels[edit.objectName().removeprefix("vitals_")]
        label.setStyleSheet(f"color: {colour};")

    def _show_form_error(self, message: str) -> None:
        colour = _error_colour(self.palette()).name()
        self.form_error.setStyleSheet(f"color: {colour};")
        self.form_error.setText(f"\u26a0 {message}" if message else "")
        self.form_error.setVisible(bool(message))

    def _unit_changed(self, unit: str) -> None:
        for row in ROWS:
            low, high, shown_unit = accepted_range(row, unit)
            self.range_labels[row.key].setText(f"{low:g}\u2013{high:g} {shown_unit}")
            self.inputs[row.key].setToolTip(
                f"{row.label} in {shown_unit}; accepted {low:g}\u2013{high:g}"
            )
        self.inputs["temperature_c"].setPlaceholderText(
            "e.g. 98.6" if unit == FAHRENHEIT else "e.g. 37.0"
        )
        self._check("temperature_c")

    def _set_now(self) -> None:
        now = QDateTime.currentDateTime()
        self.measured_at.setMaximumDateTime(now.addSecs(300))
        self.measured_at.setDateTime(now)


def _muted(label: QLabel) -> QLabel:
    """A secondary label: the palette's placeholder colour, which suits light and dark themes."""
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    return label
