"""EcgViewer: the ECG panel of the case workspace (paper, controls, calipers, readouts).

A 12-lead recording is shown as printed: three rows of four leads (I, aVR, V1, V4 / II, aVL,
V2, V5 / III, aVF, V3, V6), each column 2.5 s of consecutive time at 25 mm/s, and a rhythm
strip over the whole 10 s. Other recordings (MIT-BIH's MLII and V5, a single Holter lead)
get one full-width row per lead. Longer recordings scroll in time.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
    QScreen,
    QShowEvent,
    QWheelEvent,
    QWindow,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QScrollBar,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from clinic_app.domain.explanations import EcgRelevanceMap
from clinic_app.domain.signals import EcgRecording
from clinic_app.gui.ecg.labels import measurement_items
from clinic_app.gui.ecg.layout import (
    DEFAULT_GAIN_MM_PER_MV,
    DEFAULT_SPEED_MM_PER_S,
    GAINS_MM_PER_MV,
    PAPER_WIDTH_MM,
    SPEEDS_MM_PER_S,
    EcgGeometry,
    millivolt_factor,
    window_seconds,
)
from clinic_app.gui.ecg.paper import AnnotationItem, Calipers, EcgPaper, caliper_text, span_text
from clinic_app.io.leads import normalise_lead_name

EMPTY_TEXT = "No ECG in this case — drop a WFDB or DICOM ECG here to add one"
FIT_WIDTH = "fit-width"
FIT_PAGE = "fit-page"
#: Zoom choices: fit modes, then fixed factors of true size (1.0 = real millimetres).
ZOOM_CHOICES: tuple[tuple[str, str | float], ...] = (
    ("Fit width", FIT_WIDTH),
    ("Fit page", FIT_PAGE),
    ("50%", 0.5),
    ("75%", 0.75),
    ("True size (100%)", 1.0),
    ("150%", 1.5),
    ("200%", 2.0),
)
MIN_ZOOM, MAX_ZOOM = 0.2, 8.0
ZOOM_STEP = 1.25


class EcgViewer(QWidget):
    """Shows one ECG recording on calibrated paper with speed/gain, calipers and explanations.

    Public API: ``set_recording``, ``set_relevance``, ``set_measurements``, ``set_speed``,
    ``set_gain``, ``set_zoom``, ``set_time_offset``, ``set_rhythm_lead``, ``place_calipers``,
    ``caliper_readout``, ``shortcuts``, ``clear``. ``files_dropped`` carries files dropped on
    the viewer (the window imports them)."""

    files_dropped = Signal(list)  # list[Path]
    calipers_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ecgViewer")
        self.setAccessibleName("ECG viewer")
        self.setAcceptDrops(True)
        self._recording: EcgRecording | None = None
        self._relevance: EcgRelevanceMap | None = None
        self._title = ""
        self._zoom_mode: str | float = FIT_WIDTH
        self._actions: list[tuple[QAction, str]] = []

        self.paper = EcgPaper()
        self.paper.calipers_changed.connect(self._on_calipers_changed)
        self.paper.time_step_requested.connect(self._step_time)
        self._watched_window: QWindow | None = None
        self.scroll_area = QScrollArea()
        self.scroll_area.setObjectName("ecgScrollArea")
        self.scroll_area.setAccessibleName("ECG paper")
        self.scroll_area.setWidget(self.paper)
        self.scroll_area.setWidgetResizable(False)
        self.scroll_area.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.scroll_area.viewport().installEventFilter(self)

        self.speed_combo = self._combo(
            "ecgSpeed",
            "Paper speed",
            "Paper speed in millimetres per second (25 mm/s is standard)",
            [(f"{s:g} mm/s", s) for s in SPEEDS_MM_PER_S],
            DEFAULT_SPEED_MM_PER_S,
        )
        self.gain_combo = self._combo(
            "ecgGain",
            "Gain",
            "Amplitude in millimetres per millivolt (10 mm/mV is standard)",
            [(f"{g:g} mm/mV", g) for g in GAINS_MM_PER_MV],
            DEFAULT_GAIN_MM_PER_MV,
        )
        self.rhythm_combo = self._combo(
            "ecgRhythmLead",
            "Rhythm strip lead",
            "Lead shown as the rhythm strip, with the record's beat annotations above it",
            [],
            None,
        )
        self.zoom_combo = self._combo(
            "ecgZoom",
            "Zoom",
            "Zoom; at true size one grid millimetre is one millimetre on this screen",
            list(ZOOM_CHOICES),
            FIT_WIDTH,
        )
        self.speed_combo.currentIndexChanged.connect(
            lambda _i: self.set_speed(float(self.speed_combo.currentData()))
        )
        self.gain_combo.currentIndexChanged.connect(
            lambda _i: self.set_gain(float(self.gain_combo.currentData()))
        )
        self.rhythm_combo.currentIndexChanged.connect(self._on_rhythm_chosen)
        self.zoom_combo.currentIndexChanged.connect(
            lambda _i: self._set_zoom_mode(self.zoom_combo.currentData())
        )

        self.relevance_toggle = QCheckBox("Relevance")
        self.relevance_toggle.setObjectName("ecgRelevanceToggle")
        self.relevance_toggle.setAccessibleName("Show relevance shading")
        self.relevance_toggle.setToolTip(
            "Shade each lead where the model's explanation found it relevant (R)"
        )
        self.relevance_toggle.setChecked(True)
        self.relevance_toggle.setVisible(False)  # shown once there is relevance to shade
        self.relevance_toggle.toggled.connect(self.paper.set_relevance_visible)
        self.relevance_toggle.toggled.connect(lambda _on: self._update_legend())
        self.relevance_legend = QLabel()
        self.relevance_legend.setObjectName("ecgRelevanceLegend")
        self.relevance_legend.setAccessibleName("Relevance shading legend")
        self.relevance_legend.setToolTip(
            "Translucent orange under a trace: how much that stretch of that lead counted for "
            "the explained suggestion (0 = not at all, darkest = the most of any lead)"
        )
        self.relevance_legend.setVisible(False)

        self.caliper_label = QLabel()
        self.caliper_label.setObjectName("ecgCaliperReadout")
        self.caliper_label.setAccessibleName("Caliper measurement")
        self.caliper_label.setToolTip(
            "Click two points on a lead (or drag) to measure; Escape clears the calipers"
        )
        self.caliper_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        controls = QHBoxLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        for text, widget in (
            ("Speed", self.speed_combo),
            ("Gain", self.gain_combo),
            ("Rhythm", self.rhythm_combo),
            ("Zoom", self.zoom_combo),
        ):
            label = QLabel(text)
            label.setBuddy(widget)
            controls.addWidget(label)
            controls.addWidget(widget)
        controls.addSpacing(12)
        controls.addWidget(self.relevance_toggle)
        controls.addWidget(self.relevance_legend)
        controls.addStretch(1)
        controls.addWidget(self.caliper_label)

        self.info_label = QLabel()
        self.info_label.setObjectName("ecgInfo")
        self.info_label.setAccessibleName("ECG recording details")
        self.info_label.setWordWrap(True)
        self.measurements_label = QLabel()
        self.measurements_label.setObjectName("ecgMeasurements")
        self.measurements_label.setAccessibleName("ECG measurements")
        self.measurements_label.setToolTip("Measurements the model made on this ECG")
        self.measurements_label.setWordWrap(True)
        self.measurements_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
        )
        self.measurements_label.setVisible(False)

        self.time_scroll = QScrollBar(Qt.Orientation.Horizontal)
        self.time_scroll.setObjectName("ecgTimeScroll")
        self.time_scroll.setAccessibleName("Time in recording")
        self.time_scroll.setToolTip(
            "Move through a recording longer than the page (PgUp/PgDown: a page, ←/→: 1 s)"
        )
        self.time_scroll.valueChanged.connect(
            lambda ms: self.paper.set_offset(ms / 1000.0) if self._recording else None
        )
        self.time_label = QLabel()
        self.time_label.setObjectName("ecgTimeLabel")
        time_row = QHBoxLayout()
        time_row.setContentsMargins(0, 0, 0, 0)
        time_row.addWidget(self.time_scroll, 1)
        time_row.addWidget(self.time_label)
        self.time_scroll.valueChanged.connect(lambda _v: self._update_time_label())

        ecg_page = QWidget()
        page_layout = QVBoxLayout(ecg_page)
        page_layout.setContentsMargins(0, 0, 0, 0)
        page_layout.addLayout(controls)
        page_layout.addWidget(self.info_label)
        page_layout.addWidget(self.measurements_label)
        page_layout.addWidget(self.scroll_area, 1)
        page_layout.addLayout(time_row)

        self.empty_label = QLabel(EMPTY_TEXT)
        self.empty_label.setObjectName("ecgEmptyState")
        self.empty_label.setAccessibleName("No ECG")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty_label)
        self.stack.addWidget(ecg_page)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)
        self._make_actions()
        self.clear()

    def _combo(
        self,
        name: str,
        accessible: str,
        tooltip: str,
        items: list[tuple[str, Any]],
        current: Any,
    ) -> QComboBox:
        combo = QComboBox()
        combo.setObjectName(name)
        combo.setAccessibleName(accessible)
        combo.setToolTip(tooltip)
        for text, data in items:
            combo.addItem(text, data)
        index = combo.findData(current)
        if index >= 0:
            combo.setCurrentIndex(index)
        return combo

    def _make_actions(self) -> None:
        def add(keys: str | QKeySequence.StandardKey, text: str, slot: Any) -> None:
            action = QAction(text, self)
            action.setShortcut(QKeySequence(keys))
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            action.triggered.connect(slot)
            self.addAction(action)
            self._actions.append((action, text))

        add("]", "Faster paper speed", lambda: self._step_combo(self.speed_combo, 1))
        add("[", "Slower paper speed", lambda: self._step_combo(self.speed_combo, -1))
        add("+", "More gain (mm/mV)", lambda: self._step_combo(self.gain_combo, 1))
        add("-", "Less gain (mm/mV)", lambda: self._step_combo(self.gain_combo, -1))
        add("Ctrl+=", "Zoom in", lambda: self._zoom_by(ZOOM_STEP))
        add("Ctrl+-", "Zoom out", lambda: self._zoom_by(1 / ZOOM_STEP))
        add("Ctrl+0", "Fit the page width", lambda: self.set_zoom(None))
        add("R", "Show or hide relevance shading", self._toggle_relevance)

    # -- public API --------------------------------------------------------------------------

    def set_recording(self, recording: EcgRecording | None, title: str = "") -> None:
        """Show ``recording`` (None: the empty state). A new recording drops the relevance,
        measurements and calipers of the previous one; set them again for this one."""
        if recording is None:
            self.clear()
            return
        same = recording is self._recording
        self._recording = recording
        self._title = title
        factor = millivolt_factor(recording.units)
        millivolts = np.asarray(recording.samples, dtype=np.float32)
        if factor is not None and factor != 1.0:
            millivolts = millivolts * np.float32(factor)
        names = tuple(normalise_lead_name(n) for n in recording.lead_names)
        if not same:
            self.set_relevance(None)
            self.set_measurements(None)
        self.paper.set_data(
            millivolts,
            names,
            recording.sampling_rate_hz,
            recording.annotations,
            title,
            keep_rhythm_lead=same,
        )
        self._fill_rhythm_combo(names)
        self._update_info(recording, names, factor)
        self._update_time_range()
        self._update_legend()
        self.stack.setCurrentIndex(1)
        for widget in (self.speed_combo, self.gain_combo, self.rhythm_combo, self.zoom_combo):
            widget.setEnabled(True)
        self._apply_zoom()

    @property
    def relevance(self) -> EcgRelevanceMap | None:
        """The relevance map shaded (None when there is none)."""
        return self._relevance

    def set_relevance(self, relevance: EcgRelevanceMap | None, label: str = "") -> None:
        """Shade each lead over time by ``relevance`` (values 0..1) for suggestion ``label``."""
        self._relevance = relevance
        self.paper.set_relevance(relevance, label)
        has = self.paper.has_relevance()
        self.relevance_toggle.setVisible(has)
        if has:
            self.relevance_toggle.setChecked(True)
        self._update_legend()

    def set_measurements(self, measurements: Mapping[str, Any] | None) -> None:
        """Print the model's ECG measurements (heart rate, PR, QRS, QT...) above the paper."""
        items = measurement_items(measurements) if measurements else []
        text = "   ".join(f"<b>{html.escape(k)}</b> {html.escape(v)}" for k, v in items)
        self.measurements_label.setText(f"Measured: {text}" if text else "")
        self.measurements_label.setVisible(bool(text))

    def set_speed(self, mm_per_s: float) -> None:
        """Paper speed: 12.5, 25 or 50 mm/s. The page stays 250 mm wide, so 50 mm/s shows 5 s."""
        if mm_per_s not in SPEEDS_MM_PER_S:
            raise ValueError(f"paper speed must be one of {SPEEDS_MM_PER_S} mm/s")
        self._select(self.speed_combo, mm_per_s)
        self.paper.set_speed(mm_per_s)
        self._update_time_range()

    def set_gain(self, mm_per_mv: float) -> None:
        """Gain: 5, 10 or 20 mm/mV."""
        if mm_per_mv not in GAINS_MM_PER_MV:
            raise ValueError(f"gain must be one of {GAINS_MM_PER_MV} mm/mV")
        self._select(self.gain_combo, mm_per_mv)
        self.paper.set_gain(mm_per_mv)
        self._apply_zoom()

    def set_zoom(self, zoom: float | None) -> None:
        """A fixed factor of true size (1.0: one grid millimetre is one millimetre on the
        screen), or None to fit the page width to the viewer."""
        if zoom is None:
            self._set_zoom_mode(FIT_WIDTH)
        else:
            self._set_zoom_mode(min(max(float(zoom), MIN_ZOOM), MAX_ZOOM))

    def set_rhythm_lead(self, lead: str) -> None:
        if lead not in self.paper.lead_names():
            raise ValueError(f"lead {lead!r} is not in this recording")
        self._select(self.rhythm_combo, lead)
        self.paper.set_rhythm_lead(lead)

    def set_time_offset(self, seconds: float) -> None:
        """Start the page ``seconds`` into the recording (clamped to the recording)."""
        self.time_scroll.setValue(round(seconds * 1000))
        self.paper.set_offset(self.time_scroll.value() / 1000.0)

    def time_offset(self) -> float:
        return self.time_scroll.value() / 1000.0

    def place_calipers(self, lead: str, start_s: float, end_s: float) -> None:
        """Put the two calipers on ``lead`` at these times (snapped to samples)."""
        self.paper.place_calipers(normalise_lead_name(lead), start_s, end_s)

    def calipers(self) -> Calipers | None:
        return self.paper.calipers()

    def caliper_readout(self) -> tuple[float, float] | None:
        """(interval in ms, rate in bpm = 60000 / ms) between the calipers, or None."""
        calipers = self.paper.calipers()
        interval = calipers.interval_ms() if calipers else None
        if interval is None or interval <= 0:
            return None
        return interval, 60000.0 / interval

    def clear_calipers(self) -> None:
        self.paper.clear_calipers()

    def shortcuts(self) -> list[tuple[str, str]]:
        """(key sequence, what it does) for Help; active while the viewer has focus."""
        listed = [
            (action.shortcut().toString(QKeySequence.SequenceFormat.NativeText), text)
            for action, text in self._actions
        ]
        # handled by the paper itself, so arrow keys still work in the combo boxes and Esc
        # reaches the workspace (cancel analysis) when there are no calipers to clear
        paper_keys = (
            (Qt.Key.Key_Escape, "Clear the calipers (on the paper)"),
            (Qt.Key.Key_PageDown, "Next page of a long recording (on the paper)"),
            (Qt.Key.Key_PageUp, "Previous page of a long recording (on the paper)"),
            (Qt.Key.Key_Right, "One second later (on the paper)"),
            (Qt.Key.Key_Left, "One second earlier (on the paper)"),
        )
        native = QKeySequence.SequenceFormat.NativeText
        listed.extend((QKeySequence(key).toString(native), text) for key, text in paper_keys)
        return listed

    def clear(self) -> None:
        """Back to the empty state."""
        self._recording = None
        self._title = ""
        self.paper.set_relevance(None, "")
        self.paper.set_data(np.zeros((0, 0), dtype=np.float32), (), 1.0, (), "")
        self.set_measurements(None)
        self.rhythm_combo.blockSignals(True)
        self.rhythm_combo.clear()
        self.rhythm_combo.blockSignals(False)
        self.relevance_toggle.setVisible(False)
        self.relevance_legend.setVisible(False)
        self.info_label.clear()
        self.caliper_label.clear()
        self.time_scroll.setRange(0, 0)
        self.time_scroll.setVisible(False)
        self.time_label.setVisible(False)
        for widget in (self.speed_combo, self.gain_combo, self.rhythm_combo, self.zoom_combo):
            widget.setEnabled(False)
        self.stack.setCurrentIndex(0)

    def recording(self) -> EcgRecording | None:
        return self._recording

    def paper_geometry(self) -> EcgGeometry | None:
        """Where the paper draws everything now (pixels per mm, per second, per mV; rows)."""
        return self.paper.paper_geometry()

    def annotation_items(self) -> list[AnnotationItem]:
        """The beat symbols and rhythm bands drawn in the current window."""
        return self.paper.annotation_items()

    def relevance_shown(self) -> bool:
        return bool(self.paper.shaded_regions())

    # -- internals -------------------------------------------------------------------------

    def _select(self, combo: QComboBox, data: Any) -> None:
        index = combo.findData(data)
        if index >= 0 and index != combo.currentIndex():
            combo.blockSignals(True)
            combo.setCurrentIndex(index)
            combo.blockSignals(False)

    def _step_combo(self, combo: QComboBox, step: int) -> None:
        if combo.isEnabled():
            combo.setCurrentIndex(min(max(combo.currentIndex() + step, 0), combo.count() - 1))

    def _toggle_relevance(self) -> None:
        if self.paper.has_relevance():
            self.relevance_toggle.toggle()

    def _step_time(self, seconds: float) -> None:
        if self.time_scroll.maximum() > 0:
            self.time_scroll.setValue(self.time_scroll.value() + round(seconds * 1000))

    def _fill_rhythm_combo(self, names: tuple[str, ...]) -> None:
        self.rhythm_combo.blockSignals(True)
        self.rhythm_combo.clear()
        for name in names:
            self.rhythm_combo.addItem(name, name)
        current = self.paper.rhythm_lead()
        if current is not None:
            self.rhythm_combo.setCurrentIndex(max(0, self.rhythm_combo.findData(current)))
        self.rhythm_combo.blockSignals(False)

    def _on_rhythm_chosen(self, _index: int) -> None:
        lead = self.rhythm_combo.currentData()
        if isinstance(lead, str) and lead != self.paper.rhythm_lead():
            self.paper.set_rhythm_lead(lead)
            self._apply_zoom()

    def _update_info(
        self, recording: EcgRecording, names: tuple[str, ...], factor: float | None
    ) -> None:
        parts = [html.escape(self._title)] if self._title else []
        lead_text = f"{len(names)} leads" if len(names) != 1 else "1 lead"
        if len(names) <= 4:
            lead_text += f" ({', '.join(names)})"
        parts.append(lead_text)
        parts.append(f"{recording.sampling_rate_hz:g} Hz")
        parts.append(f"{recording.duration_s:.1f} s")
        if factor is None:
            parts.append(
                f"<b>units {html.escape(recording.units)!s} not recognised: drawn as mV</b>"
            )
        self.info_label.setText(" · ".join(parts))

    def _update_time_range(self) -> None:
        duration = self.paper.duration_s()
        window = window_seconds(float(self.speed_combo.currentData()))
        extra_ms = max(0, round((duration - window) * 1000))
        self.time_scroll.blockSignals(True)
        self.time_scroll.setRange(0, extra_ms)
        self.time_scroll.setPageStep(round(window * 1000))
        self.time_scroll.setSingleStep(1000)
        self.time_scroll.blockSignals(False)
        self.paper.set_offset(self.time_scroll.value() / 1000.0)
        self.time_scroll.setVisible(extra_ms > 0)
        self.time_label.setVisible(extra_ms > 0)
        self._update_time_label()

    def _update_time_label(self) -> None:
        geometry = self.paper.paper_geometry()
        if geometry is None:
            return
        start = geometry.offset_s
        end = min(start + geometry.window_s, self.paper.duration_s())
        self.time_label.setText(span_text(start, end, self.paper.duration_s()))

    def _update_legend(self) -> None:
        has = self.paper.has_relevance()
        label = self.paper.relevance_label() or "the suggestion"
        self.relevance_legend.setText(
            "<span style='background-color: rgba(255,120,0,0.45)'>&nbsp;&nbsp;&nbsp;&nbsp;"
            f"</span> shaded: relevance to {html.escape(label)}"
        )
        self.relevance_legend.setVisible(has and self.relevance_toggle.isChecked())

    def _on_calipers_changed(self) -> None:
        calipers = self.paper.calipers()
        if calipers is None:
            self.caliper_label.setText("")
        elif calipers.end_s is None:
            self.caliper_label.setText(f"Caliper on {calipers.lead}: click the second point")
        else:
            self.caliper_label.setText(
                f"Calipers on {calipers.lead}: {caliper_text(calipers.interval_ms())}"
            )
        self.calipers_changed.emit()

    def _set_zoom_mode(self, mode: Any) -> None:
        if mode not in (FIT_WIDTH, FIT_PAGE):
            mode = float(mode)
        self._zoom_mode = mode
        index = self.zoom_combo.findData(mode)
        self.zoom_combo.blockSignals(True)
        if index >= 0:
            self.zoom_combo.setCurrentIndex(index)
        else:
            text = f"{mode * 100:.0f}%" if isinstance(mode, float) else str(mode)
            custom = self.zoom_combo.findText(text)
            if custom < 0:
                self.zoom_combo.addItem(text, mode)
                custom = self.zoom_combo.count() - 1
            self.zoom_combo.setCurrentIndex(custom)
        self.zoom_combo.blockSignals(False)
        self._apply_zoom()

    def _zoom_by(self, factor: float) -> None:
        self.set_zoom(self.paper.zoom() * factor)

    def _apply_zoom(self) -> None:
        """Set the paper's zoom from the mode: a fixed factor, or fitted to the viewport."""
        mode = self._zoom_mode
        if isinstance(mode, float):
            self.paper.set_zoom(mode)
            self._update_time_label()
            return
        true_mm = self.paper.px_per_mm_at_zoom_one()
        viewport = self.scroll_area.viewport().size()
        scrollbar = self.scroll_area.verticalScrollBar().sizeHint().width()
        available_width = max(50, self.scroll_area.width() - 2 * self.scroll_area.frameWidth())
        zoom = (available_width - scrollbar) / (PAPER_WIDTH_MM * true_mm)
        geometry = self.paper.paper_geometry()
        if mode == FIT_PAGE and geometry is not None:
            height_mm = geometry.height / geometry.px_per_mm
            zoom = min(
                available_width / (PAPER_WIDTH_MM * true_mm),
                max(50, viewport.height()) / (height_mm * true_mm),
            )
        self.paper.set_zoom(min(max(zoom, MIN_ZOOM), MAX_ZOOM))
        self._update_time_label()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.scroll_area.viewport():
            if event.type() == QEvent.Type.Resize and not isinstance(self._zoom_mode, float):
                self._apply_zoom()
            elif (
                event.type() == QEvent.Type.Wheel
                and isinstance(event, QWheelEvent)
                and event.modifiers() & Qt.KeyboardModifier.ControlModifier
            ):
                steps = event.angleDelta().y() / 120.0
                if steps:
                    self._zoom_by(ZOOM_STEP**steps)
                return True
        return super().eventFilter(watched, event)

    def showEvent(self, event: QShowEvent) -> None:
        """Follow the window to other screens: millimetres depend on the screen's DPI."""
        super().showEvent(event)
        handle = self.window().windowHandle()
        if handle is not None and handle is not self._watched_window:
            self._watched_window = handle
            handle.screenChanged.connect(self._on_screen_changed)

    def _on_screen_changed(self, _screen: QScreen) -> None:
        self.paper.refresh_screen()
        self._apply_zoom()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.files_dropped.emit(paths)
