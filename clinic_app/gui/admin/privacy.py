"""Differentially private statistics: choose one, see the budget, confirm the spend, release.

The dialog never computes a statistic itself: :func:`clinic_app.services.privacy.release`
charges the dataset's budget (committed and audited) and only then counts and adds noise. The
noisy counts are shown with the interval that holds the true count in 95% of releases, from
the noise distribution the release states (discrete Laplace scale or discrete Gaussian
variance), as a table and as bars with error bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QKeySequence, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from clinic_app.domain.errors import InputError, PrivacyBudgetExceeded
from clinic_app.domain.permissions import Permission, allowed
from clinic_app.gui.admin._common import (
    StatusLabel,
    WrappedLabel,
    add_action,
    background_for,
    compact_rows,
    db_write_for,
    named,
)
from clinic_app.gui.dialogs import show_error
from clinic_app.services.context import Actor
from clinic_app.services.privacy import (
    DATASETS,
    QUERIES,
    BudgetStatus,
    Query,
    Release,
    budget_status,
    exact_text,
    parse_amount,
    release,
    set_budget,
)
from clinic_app.storage.engine import Database

CONFIDENCE = 0.95
MECHANISM_NAMES = {"laplace": "Discrete Laplace (pure \u03b5)", "gaussian": "Discrete Gaussian"}


# -- the error bar ----------------------------------------------------------------------------
def noise_half_width(noise: dict[str, str], level: float = CONFIDENCE) -> int | None:
    """The smallest k with P(|noise| <= k) >= ``level`` for the release's noise, or None.

    Discrete Laplace with scale b: P(|Y| > k) = 2 q^(k+1) / (1 + q), q = exp(-1/b).
    Discrete Gaussian with variance s^2: summed from its probability mass function.
    """
    alpha = 1.0 - level
    if "scale" in noise:
        scale = float(Fraction(noise["scale"]))
        q = math.exp(-1.0 / scale)
        return max(0, math.ceil(-scale * math.log(alpha * (1 + q) / 2) - 1 - 1e-12))
    if "sigma_squared" in noise:
        variance = float(Fraction(noise["sigma_squared"]))
        sigma = math.sqrt(variance)
        if sigma > 10_000:  # the normal approximation is exact enough here
            return math.ceil(1.959963984540054 * sigma)
        reach = math.ceil(40 * sigma) + 1
        weights = [math.exp(-(y * y) / (2 * variance)) for y in range(reach + 1)]
        total = weights[0] + 2 * sum(weights[1:])
        mass = weights[0]
        for k in range(1, reach + 1):
            if mass / total >= level:
                return k - 1
            mass += 2 * weights[k]
        return reach
    return None


@dataclass(frozen=True)
class ResultRow:
    """One released cell: its labels, the noisy count and the 95% interval (clipped at 0)."""

    labels: tuple[str, ...]
    count: int
    low: int
    high: int

    @property
    def label(self) -> str:
        return " \u00b7 ".join(self.labels)


def result_rows(result: Release) -> list[ResultRow]:
    """The release's cells with intervals; counts cannot be negative, so neither is ``low``."""
    half = noise_half_width(result.noise) or 0
    return [
        ResultRow(tuple(cell), value, max(0, value - half), max(0, value + half))
        for cell, value in result.rows
    ]


def nice_step(rough: float) -> float:
    """A tick spacing of 1, 2 or 5 times a power of ten, at least ``rough`` (and at least 1)."""
    if rough <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(rough))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= rough))


class ErrorBarChart(QWidget):
    """Horizontal bars (noisy counts) with 95% error bars, in the palette's colours."""

    ROW_HEIGHT = 22

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[ResultRow] = []
        self.setObjectName("privacyResultChart")
        self.setAccessibleName("Released counts with 95% intervals")
        self.setToolTip(
            "Bars: noisy counts. Whiskers: where the true count lies in 95% of releases"
        )
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_rows(self, rows: list[ResultRow]) -> None:
        self.rows = rows
        self.setFixedHeight(self.sizeHint().height())
        self.update()

    def sizeHint(self) -> QSize:
        axis = self.fontMetrics().height() + 12
        return QSize(420, max(60, 16 + axis + self.ROW_HEIGHT * len(self.rows)))

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.base())
        if not self.rows:
            painter.setPen(palette.placeholderText().color())
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No result yet")
            return
        metrics = painter.fontMetrics()
        label_width = min(
            max(metrics.horizontalAdvance(row.label) for row in self.rows) + 12,
            self.width() // 3,
        )
        number_width = (
            max(metrics.horizontalAdvance(self._value_text(row)) for row in self.rows) + 8
        )
        left = label_width
        right = self.width() - number_width - 8
        top = 8.0
        largest = max(max(row.high, row.count) for row in self.rows) or 1
        span = max(right - left, 10)

        def x_of(value: float) -> float:
            return left + span * max(0.0, value) / largest

        bar_colour = palette.highlight().color()
        bar_colour.setAlpha(150)
        text_colour = palette.text().color()
        bottom = top + self.ROW_HEIGHT * len(self.rows)
        grid = palette.mid().color()
        step = nice_step(largest / 4)
        for value in (step * i for i in range(int(largest // step) + 1)):
            x = x_of(value)
            style = Qt.PenStyle.SolidLine if value == 0 else Qt.PenStyle.DotLine
            painter.setPen(QPen(grid, 1, style))
            painter.drawLine(int(x), int(top) - 4, int(x), int(bottom))
            painter.setPen(palette.placeholderText().color())
            tick = f"{value:.0f}"
            painter.drawText(
                QRectF(x - 40, bottom + 2, 80, metrics.height() + 4),
                int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop),
                tick,
            )
        for index, row in enumerate(self.rows):
            y = top + index * self.ROW_HEIGHT
            middle = y + self.ROW_HEIGHT / 2
            painter.setPen(text_colour)
            label = metrics.elidedText(row.label, Qt.TextElideMode.ElideRight, label_width - 8)
            painter.drawText(
                QRectF(0, y, label_width - 8, self.ROW_HEIGHT),
                int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
                label,
            )
            bar = QRectF(left, y + 4, x_of(row.count) - left, self.ROW_HEIGHT - 8)
            painter.fillRect(bar, bar_colour)
            pen = QPen(text_colour, 1.5)
            painter.setPen(pen)
            low, high = x_of(row.low), x_of(row.high)
            painter.drawLine(int(low), int(middle), int(high), int(middle))
            for x in (low, high):
                painter.drawLine(int(x), int(y + 6), int(x), int(y + self.ROW_HEIGHT - 6))
            painter.drawText(
                QRectF(right + 6, y, number_width, self.ROW_HEIGHT),
                int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                self._value_text(row),
            )

    @staticmethod
    def _value_text(row: ResultRow) -> str:
        return f"{row.count}  ({row.low}\u2013{row.high})"


# -- the dialog -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReleaseRequest:
    """One release as chosen in the dialog: plain values, safe to hand to a worker thread."""

    query: str
    epsilon: Fraction
    dataset: str
    mechanism: str = "laplace"
    delta: Fraction = Fraction(0)
    codes: tuple[str, ...] | None = None
    event_types: tuple[str, ...] | None = None
    since: str | None = None
    until: str | None = None
    max_per_patient: int = 1

    def release(self, database: Database, actor: Actor) -> Release:
        return release(
            database,
            actor,
            self.query,
            self.epsilon,
            dataset=self.dataset,
            delta=self.delta,
            mechanism=self.mechanism,
            codes=self.codes,
            event_types=self.event_types,
            since=self.since,
            until=self.until,
            max_per_patient=self.max_per_patient,
            now=datetime.now(UTC),
        )


def _describe(widget: QWidget, name: str, tip: str) -> None:
    widget.setAccessibleName(name)
    widget.setToolTip(tip)


def query_description(query: Query) -> str:
    """What a statistic counts and protects, for the person choosing it."""
    datasets = " or ".join(query.datasets)
    return (
        f"Counts {', '.join(query.columns).replace('_', ' ')} cells. Privacy unit: one "
        f"{query.unit}; reads the {datasets} dataset."
    )


def _split(text: str) -> list[str]:
    return [part for part in (piece.strip() for piece in text.replace(";", ",").split(",")) if part]


class PrivacyStatsDialog(QDialog):
    """Release one aggregate statistic under differential privacy and show it with its error."""

    def __init__(self, database: Database, actor: Actor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.database = database
        self.actor = actor
        self.budget: BudgetStatus | None = None
        self.budget_known = False
        self.released: Release | None = None
        self.confirmation: QMessageBox | None = None
        self.busy = False
        self._budget_generation = 0
        self._shortcuts: list[tuple[str, str]] = []
        self.may_release = allowed(actor.role, Permission.STATS_RELEASE)
        self.may_set_budget = allowed(actor.role, Permission.PRIVACY_BUDGET_SET)
        self.setObjectName("privacyStatsDialog")
        self.setWindowTitle("Private statistics")
        self.resize(1040, 720)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self._build_query_box())
        left_layout.addWidget(self._build_budget_box())
        self.release_button = named(
            QPushButton("Spend \u03b5 and &release\u2026"), "privacyReleaseButton"
        )
        _describe(
            self.release_button,
            "Release statistic",
            "Spend budget and show the noisy result; asks first (Ctrl+Return)",
        )
        self.release_button.clicked.connect(self.request_release)
        release_row = QHBoxLayout()
        release_row.addStretch(1)
        release_row.addWidget(self.release_button)
        left_layout.addLayout(release_row)
        left_layout.addStretch(1)
        splitter.addWidget(left)
        splitter.addWidget(self._build_result_box())
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        self.status = named(StatusLabel(), "privacyStatus")
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        add_action(
            self,
            "Release",
            "Ctrl+Return",
            "Release the statistic",
            self.request_release,
            self._shortcuts,
        )
        add_action(
            self,
            "Refresh budget",
            QKeySequence.StandardKey.Refresh,
            "Reload the remaining budget",
            self.refresh_budget,
            self._shortcuts,
        )
        self._query_changed()
        if not self.may_release:
            self.status.show_status(
                f"Your role ({actor.role.value.replace('_', ' ')}) may not release statistics.",
                "error",
            )

    # -- layout -------------------------------------------------------------------------------
    def _build_query_box(self) -> QGroupBox:
        box = QGroupBox("Statistic")
        form = QFormLayout(box)
        self.query_combo = named(QComboBox(), "privacyQuery")
        for query in QUERIES.values():
            self.query_combo.addItem(query.title, query.name)
        _describe(self.query_combo, "Statistic", "What to count")
        self.query_info = named(WrappedLabel(), "privacyQueryInfo")
        self.dataset_combo = named(QComboBox(), "privacyDataset")
        _describe(self.dataset_combo, "Dataset", "Whose data, and whose budget, the release uses")
        self.dataset_info = named(WrappedLabel(), "privacyDatasetInfo")
        self.mechanism_combo = named(QComboBox(), "privacyMechanism")
        for name, text in MECHANISM_NAMES.items():
            self.mechanism_combo.addItem(text, name)
        _describe(
            self.mechanism_combo,
            "Noise mechanism",
            "Laplace spends only epsilon; Gaussian also spends delta",
        )
        self.epsilon_spin = named(QDoubleSpinBox(), "privacyEpsilon")
        self.epsilon_spin.setDecimals(3)
        self.epsilon_spin.setRange(0.001, 10.0)
        self.epsilon_spin.setSingleStep(0.05)
        self.epsilon_spin.setValue(0.1)
        _describe(
            self.epsilon_spin,
            "Epsilon",
            "Privacy cost of this release: smaller is more private and noisier",
        )
        self.delta_edit = named(QLineEdit("1/1000000"), "privacyDelta")
        _describe(
            self.delta_edit,
            "Delta",
            "Needed by the Gaussian mechanism and by labels taken from the data",
        )
        self.codes_edit = named(QLineEdit(), "privacyCodes")
        self.codes_edit.setPlaceholderText(
            "SNOMED codes, comma separated (empty: codes in the data)"
        )
        _describe(
            self.codes_edit, "Diagnosis codes", "The codes to count; naming them costs no delta"
        )
        self.event_types_edit = named(QLineEdit(), "privacyEventTypes")
        self.event_types_edit.setPlaceholderText(
            "e.g. case.read, case.sign (empty: types in the data)"
        )
        _describe(self.event_types_edit, "Event types", "The audit event types to count")
        self.since_edit = named(QLineEdit(placeholderText="YYYY-MM"), "privacySinceMonth")
        _describe(
            self.since_edit,
            "First month",
            "First month counted (default: 11 months before the last)",
        )
        self.until_edit = named(QLineEdit(placeholderText="YYYY-MM"), "privacyUntilMonth")
        _describe(self.until_edit, "Last month", "Last month counted (default: this month)")
        months = QWidget()
        months_layout = QHBoxLayout(months)
        months_layout.setContentsMargins(0, 0, 0, 0)
        months_layout.addWidget(self.since_edit)
        months_layout.addWidget(QLabel("to"))
        months_layout.addWidget(self.until_edit)
        self.months_row = months
        self.max_per_patient_spin = named(QSpinBox(), "privacyMaxPerPatient")
        self.max_per_patient_spin.setRange(1, 50)
        _describe(
            self.max_per_patient_spin,
            "Analyses per patient",
            "At most this many analyses count per patient; it multiplies the noise",
        )

        form.addRow("&Statistic:", self.query_combo)
        form.addRow("", self.query_info)
        form.addRow("&Dataset:", self.dataset_combo)
        form.addRow("", self.dataset_info)
        form.addRow("&Mechanism:", self.mechanism_combo)
        form.addRow("&Epsilon (\u03b5):", self.epsilon_spin)
        form.addRow("De&lta (\u03b4):", self.delta_edit)
        form.addRow("&Codes:", self.codes_edit)
        form.addRow("E&vent types:", self.event_types_edit)
        form.addRow("M&onths:", self.months_row)
        form.addRow("Max per &patient:", self.max_per_patient_spin)
        self.form = form

        self.query_combo.currentIndexChanged.connect(self._query_changed)
        self.dataset_combo.currentIndexChanged.connect(self._dataset_changed)
        self.mechanism_combo.currentIndexChanged.connect(self._update_controls)
        self.codes_edit.textChanged.connect(self._update_controls)
        self.event_types_edit.textChanged.connect(self._update_controls)
        self.epsilon_spin.valueChanged.connect(self._update_controls)
        return box

    def _build_budget_box(self) -> QGroupBox:
        box = QGroupBox("Privacy budget of the dataset")
        layout = QVBoxLayout(box)
        self.budget_label = named(StatusLabel(), "privacyBudgetLabel")
        _describe(self.budget_label, "Remaining budget", "What is left of the dataset's budget")
        self.budget_bar = named(QProgressBar(), "privacyBudgetBar")
        self.budget_bar.setRange(0, 1000)
        self.budget_bar.setTextVisible(False)
        _describe(self.budget_bar, "Epsilon spent", "Share of the epsilon budget already spent")
        self.spend_label = named(StatusLabel(), "privacySpendLabel")
        layout.addWidget(self.budget_label)
        layout.addWidget(self.budget_bar)
        layout.addWidget(self.spend_label)

        self.budget_editor = named(QWidget(), "privacyBudgetEditor")
        editor = QHBoxLayout(self.budget_editor)
        editor.setContentsMargins(0, 6, 0, 0)
        self.budget_epsilon_spin = named(QDoubleSpinBox(), "privacyBudgetEpsilon")
        self.budget_epsilon_spin.setDecimals(3)
        self.budget_epsilon_spin.setRange(0.0, 100.0)
        self.budget_epsilon_spin.setValue(1.0)
        _describe(self.budget_epsilon_spin, "Total epsilon", "The dataset's whole epsilon budget")
        self.budget_delta_edit = named(QLineEdit("1/100000"), "privacyBudgetDelta")
        _describe(
            self.budget_delta_edit,
            "Total delta",
            "The dataset's whole delta budget (0 allows only pure epsilon releases)",
        )
        self.budget_button = named(QPushButton("Set budget"), "privacySetBudget")
        _describe(
            self.budget_button,
            "Set budget",
            "Set the total budget of this dataset (administrators)",
        )
        self.budget_button.clicked.connect(self.set_budget_from_controls)
        editor.addWidget(QLabel("Total \u03b5:"))
        editor.addWidget(self.budget_epsilon_spin)
        editor.addWidget(QLabel("\u03b4:"))
        editor.addWidget(self.budget_delta_edit, 1)
        editor.addWidget(self.budget_button)
        layout.addWidget(self.budget_editor)
        self.budget_editor.setVisible(self.may_set_budget)
        return box

    def _build_result_box(self) -> QGroupBox:
        box = QGroupBox("Released result")
        layout = QVBoxLayout(box)
        self.result_title = named(WrappedLabel("Nothing released yet."), "privacyResultTitle")
        self.result_table = named(QTableWidget(0, 0), "privacyResultTable")
        _describe(
            self.result_table,
            "Released counts",
            "Noisy counts with the interval that holds the true count in 95% of releases",
        )
        self.result_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.result_table.setAlternatingRowColors(True)
        compact_rows(self.result_table)
        self.result_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.result_table.horizontalHeader().setStretchLastSection(True)
        self.chart = ErrorBarChart()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.chart)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.result_tabs = named(QTabWidget(), "privacyResultTabs")
        self.result_tabs.addTab(scroll, "&Chart")
        self.result_tabs.addTab(self.result_table, "&Table")
        _describe(
            self.result_tabs, "Result views", "The result as bars with error bars, or as a table"
        )
        self.noise_label = named(WrappedLabel(), "privacyNoiseLabel")
        self.after_label = named(StatusLabel(), "privacyBudgetAfter")
        layout.addWidget(self.result_title)
        layout.addWidget(self.result_tabs, 1)
        layout.addWidget(self.noise_label)
        layout.addWidget(self.after_label)
        return box

    def shortcuts(self) -> list[tuple[str, str]]:
        """(key sequence, what it does) for the Help page."""
        return list(self._shortcuts)

    # -- choices ------------------------------------------------------------------------------
    def query(self) -> Query:
        return QUERIES[str(self.query_combo.currentData())]

    def dataset(self) -> str:
        return str(self.dataset_combo.currentData())

    def mechanism(self) -> str:
        return str(self.mechanism_combo.currentData())

    def epsilon(self) -> Fraction:
        """The epsilon as shown, exactly (0.1 is 1/10, not a binary approximation)."""
        return Fraction(f"{self.epsilon_spin.value():.{self.epsilon_spin.decimals()}f}")

    def set_query(self, name: str, dataset: str | None = None) -> None:
        self.query_combo.setCurrentIndex(self.query_combo.findData(name))
        if dataset is not None:
            self.dataset_combo.setCurrentIndex(self.dataset_combo.findData(dataset))

    def _labels_from_data(self) -> bool:
        columns = self.query().columns
        if "code" in columns:
            return not _split(self.codes_edit.text())
        if "event_type" in columns:
            return not _split(self.event_types_edit.text())
        return False

    def needs_delta(self) -> bool:
        return self.mechanism() == "gaussian" or self._labels_from_data()

    def _query_changed(self) -> None:
        query = self.query()
        self.query_info.setText(query_description(query))
        self.dataset_combo.blockSignals(True)
        self.dataset_combo.clear()
        for name in query.datasets:
            self.dataset_combo.addItem(name, name)
        self.dataset_combo.blockSignals(False)
        columns = query.columns
        for widget, shown in (
            (self.codes_edit, "code" in columns),
            (self.event_types_edit, "event_type" in columns),
            (self.months_row, "month" in columns),
            (self.max_per_patient_spin, query.name == "analyses_by_role_month"),
        ):
            self.form.setRowVisible(widget, shown)
        self._dataset_changed()

    def _dataset_changed(self) -> None:
        self.dataset_info.setText(DATASETS.get(self.dataset(), "").capitalize() + ".")
        self.refresh_budget()

    def _update_controls(self) -> None:
        needs_delta = self.needs_delta()
        self.delta_edit.setEnabled(needs_delta)
        epsilon = self.epsilon()
        budget = self.budget
        ready = self.may_release and self.budget_known and not self.busy
        if not self.budget_known:
            self.spend_label.show_status("")
        elif budget is None:
            ready = False
            self.spend_label.show_status(
                "Nothing can be released until a budget is set"
                + (" (below)." if self.may_set_budget else " by an administrator."),
                "warn",
            )
        elif epsilon > budget.epsilon_remaining:
            ready = False
            self.spend_label.show_status(
                f"\u03b5 {exact_text(epsilon)} is more than the "
                f"{exact_text(budget.epsilon_remaining)} left of this budget: choose a smaller "
                "epsilon.",
                "error",
            )
        else:
            self.spend_label.show_status(
                f"This release would spend \u03b5 {exact_text(epsilon)}, leaving "
                f"{exact_text(budget.epsilon_remaining - epsilon)}."
            )
        self.release_button.setEnabled(ready)

    # -- budget -------------------------------------------------------------------------------
    def refresh_budget(self) -> None:
        """Read the dataset's budget in the background."""
        self._budget_generation += 1
        generation = self._budget_generation
        self.budget_known = False
        self.budget_label.show_status("Reading the budget\u2026")
        self._update_controls()
        database, actor, dataset = self.database, self.actor, self.dataset()
        background_for(
            self,
            lambda: budget_status(database, actor, dataset),
            lambda status: self._show_budget(generation, status),
            lambda exc: self._budget_failed(generation, exc),
        )

    def _show_budget(self, generation: int, status: BudgetStatus | None) -> None:
        if generation != self._budget_generation:
            return
        self.budget = status
        self.budget_known = True
        if status is None:
            self.budget_label.show_status(
                f"No budget has been set for dataset '{self.dataset()}'.", "warn"
            )
            self.budget_bar.setValue(0)
            self.budget_button.setText("Set budget")
        else:
            self.budget_label.show_status(
                self._budget_text(status), "error" if status.epsilon_remaining <= 0 else None
            )
            share = (
                status.epsilon_spent / status.epsilon_total if status.epsilon_total else Fraction(1)
            )
            self.budget_bar.setValue(int(1000 * min(share, Fraction(1))))
            self.budget_button.setText("Change budget")
            self.budget_epsilon_spin.setValue(float(status.epsilon_total))
            self.budget_delta_edit.setText(exact_text(status.delta_total))
        self._update_controls()

    @staticmethod
    def _budget_text(status: BudgetStatus) -> str:
        releases = f"{status.releases} release{'s' if status.releases != 1 else ''} so far"
        return (
            f"Remaining: \u03b5 {exact_text(status.epsilon_remaining)} of "
            f"{exact_text(status.epsilon_total)}, \u03b4 {exact_text(status.delta_remaining)} of "
            f"{exact_text(status.delta_total)} ({releases})."
        )

    def _budget_failed(self, generation: int, exc: Exception) -> None:
        if generation != self._budget_generation:
            return
        self.budget_known = False
        self.budget_label.show_status(f"The budget cannot be shown: {exc}", "error")
        self._update_controls()
        show_error(self, exc)

    def set_budget_from_controls(self) -> None:
        """Set the dataset's total budget from the editor (administrators only)."""
        try:
            epsilon = Fraction(f"{self.budget_epsilon_spin.value():.3f}")
            delta = parse_amount(self.budget_delta_edit.text() or "0", "the delta budget")
        except InputError as exc:
            show_error(self, exc)
            return
        self.set_dataset_budget(epsilon, delta)

    def set_dataset_budget(self, epsilon: Fraction, delta: Fraction) -> None:
        database, actor, dataset = self.database, self.actor, self.dataset()
        self.budget_button.setEnabled(False)

        def done(status: BudgetStatus) -> None:
            self.budget_button.setEnabled(True)
            self.status.show_status(f"Budget of '{dataset}' set: {self._budget_text(status)}", "ok")
            self.refresh_budget()

        def failed(exc: Exception) -> None:
            self.budget_button.setEnabled(True)
            self.status.show_status(str(exc), "error")
            show_error(self, exc)

        db_write_for(
            self, lambda: set_budget(database, actor, dataset, epsilon, delta), done, failed
        )

    # -- release ------------------------------------------------------------------------------
    def request_release(self) -> None:
        """Ask for confirmation (it spends budget for good), then release."""
        if not self.release_button.isEnabled():
            return
        epsilon = self.epsilon()
        budget = self.budget
        remaining = (
            f"{exact_text(budget.epsilon_remaining)} remains now and "
            f"{exact_text(budget.epsilon_remaining - epsilon)} will remain after."
            if budget is not None
            else "no budget is known."
        )
        delta = ""
        if self.needs_delta():
            delta = f" and \u03b4 {self.delta_edit.text().strip()}"
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Release statistic",
            f"Release \u201c{self.query().title}\u201d from dataset '{self.dataset()}'?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setObjectName("privacyConfirmation")
        box.setInformativeText(
            f"This spends \u03b5 {exact_text(epsilon)}{delta} of the dataset's privacy budget: "
            f"{remaining} Spent budget cannot be given back, even if you close the result."
        )
        box.button(QMessageBox.StandardButton.Yes).setText("Spend and release")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.finished.connect(lambda code: self._confirmed(code == QMessageBox.StandardButton.Yes))
        self.confirmation = box
        box.open()

    def _confirmed(self, yes: bool) -> None:
        self.confirmation = None
        if yes:
            self.release_now()

    def release_now(self) -> None:
        """Release with the current choices, without asking (the confirmation calls this)."""
        try:
            request = self.release_request()
        except InputError as exc:
            show_error(self, exc)
            return
        self.busy = True
        self._update_controls()
        self.status.show_status("Releasing\u2026")
        database, actor = self.database, self.actor
        db_write_for(
            self, lambda: request.release(database, actor), self._released, self._release_failed
        )

    def release_request(self) -> ReleaseRequest:
        """What the controls ask for (raises InputError for a delta that is not a number)."""
        query = self.query()
        columns = query.columns
        return ReleaseRequest(
            query=query.name,
            epsilon=self.epsilon(),
            dataset=self.dataset(),
            mechanism=self.mechanism(),
            delta=(
                parse_amount(self.delta_edit.text() or "0", "delta")
                if self.needs_delta()
                else Fraction(0)
            ),
            codes=tuple(_split(self.codes_edit.text())) or None if "code" in columns else None,
            event_types=(
                tuple(_split(self.event_types_edit.text())) or None
                if "event_type" in columns
                else None
            ),
            since=self.since_edit.text().strip() or None if "month" in columns else None,
            until=self.until_edit.text().strip() or None if "month" in columns else None,
            max_per_patient=(
                self.max_per_patient_spin.value() if query.name == "analyses_by_role_month" else 1
            ),
        )

    def _released(self, result: Release) -> None:
        self.busy = False
        self.released = result
        self.budget = result.budget_after
        self.budget_known = True
        self._show_result(result)
        self._show_budget(self._budget_generation, result.budget_after)
        self.status.show_status(
            f"Released with \u03b5 {exact_text(result.epsilon)} (charge {result.charge_id}).", "ok"
        )

    def _release_failed(self, exc: Exception) -> None:
        self.busy = False
        self._update_controls()
        if isinstance(exc, PrivacyBudgetExceeded):
            self.status.show_status(f"Not released: {exc}", "error")
            self.refresh_budget()
        else:
            self.status.show_status(str(exc), "error")
        show_error(self, exc)

    def _show_result(self, result: Release) -> None:
        rows = result_rows(result)
        half = noise_half_width(result.noise)
        self.result_title.setText(
            f"<b>{result.title}</b><br>Dataset '{result.dataset}', released "
            f"{result.released_at.astimezone():%Y-%m-%d %H:%M}."
        )
        headers = [*(column.replace("_", " ").capitalize() for column in result.columns)]
        headers += ["Noisy count", f"{int(CONFIDENCE * 100)}% interval"]
        table = self.result_table
        table.clear()
        table.setColumnCount(len(headers))
        table.setHorizontalHeaderLabels(headers)
        table.setRowCount(len(rows))
        for index, row in enumerate(rows):
            values = [*row.labels, str(row.count), f"{row.low} \u2013 {row.high}"]
            for column, value in enumerate(values):
                item = QTableWidgetItem(value)
                if column == len(row.labels):
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                elif column > len(row.labels):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                table.setItem(index, column, item)
        self.chart.set_rows(rows)
        noise = result.noise
        if "scale" in noise:
            how = (
                f"{MECHANISM_NAMES['laplace']} noise, scale {exact_text(Fraction(noise['scale']))}"
                f" (sensitivity {noise['sensitivity_l1']} / \u03b5 {exact_text(result.epsilon)})"
            )
        else:
            sigma = math.sqrt(float(Fraction(noise.get("sigma_squared", "0"))))
            how = f"{MECHANISM_NAMES['gaussian']} noise, \u03c3 \u2248 {sigma:.1f}"
        text = (
            f"{how}. Each count is within \u00b1{half} of the true count in "
            f"{int(CONFIDENCE * 100)}% of releases; intervals are clipped at 0."
        )
        if "threshold" in noise:
            text += f" Labels come from the data: cells below {noise['threshold']} are not shown."
        if result.summary:
            text += (
                " "
                + "; ".join(
                    f"{key.replace('_', ' ')}: {value}" for key, value in result.summary.items()
                )
                + "."
            )
        self.noise_label.setText(text)
        after = result.budget_after
        self.after_label.show_status(
            f"Remaining budget after this release: \u03b5 {exact_text(after.epsilon_remaining)} of "
            f"{exact_text(after.epsilon_total)}.",
            "warn" if after.epsilon_remaining <= 0 else None,
        )
