"""The ECG "paper": a QWidget that paints grid, traces, annotations, shading and calipers.

Painting is cheap by construction: the grid is a QPixmap cached per size and device pixel
ratio, and the traces are min/max envelopes (two points per device pixel column) built once
per layout, so a repaint for a caliper drag only blits the grid and strokes ready polylines.
The paper is always light pink with a dark trace, as printed, in light and dark themes alike.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QByteArray, QDataStream, QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QHelpEvent,
    QKeyEvent,
    QLinearGradient,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
    QPolygonF,
)
from PySide6.QtWidgets import QToolTip, QWidget

from clinic_app.domain.explanations import EcgRelevanceMap
from clinic_app.domain.signals import EcgAnnotation
from clinic_app.gui.ecg.labels import (
    SUPRAVENTRICULAR_SYMBOLS,
    VENTRICULAR_SYMBOLS,
    beat_name,
    rhythm_code,
    rhythm_name,
)
from clinic_app.gui.ecg.layout import (
    CALIBRATION_PULSE_MV,
    CALIBRATION_PULSE_S,
    DEFAULT_GAIN_MM_PER_MV,
    DEFAULT_SPEED_MM_PER_S,
    FOOTER_MM,
    HEADER_MM,
    MM_PER_INCH,
    EcgGeometry,
    EcgRow,
    LeadSegment,
    compute_geometry,
    envelope,
    finite_runs,
)
from clinic_app.io.leads import normalise_lead_name

# Clinical colours (fixed on purpose: ECG paper looks the same in every theme).
PAPER_COLOUR = QColor(255, 250, 250)
MINOR_GRID_COLOUR = QColor(246, 196, 196)
MAJOR_GRID_COLOUR = QColor(226, 120, 120)
TRACE_COLOUR = QColor(20, 20, 20)
TEXT_COLOUR = QColor(40, 40, 40)
CALIPER_COLOUR = QColor(0, 92, 200)
RELEVANCE_COLOUR = QColor(255, 120, 0)
RELEVANCE_MAX_ALPHA = 150
RHYTHM_BAND_COLOUR = QColor(90, 130, 200, 55)
VENTRICULAR_COLOUR = QColor(200, 0, 0)
SUPRAVENTRICULAR_COLOUR = QColor(0, 80, 190)
NORMAL_BEAT_COLOUR = QColor(90, 90, 90)
#: Printed trace thickness.
TRACE_LINE_MM = 0.25
#: Relevance below this is not shaded (it would only tint the paper).
RELEVANCE_FLOOR = 0.05
#: Caliper clicks closer than this (px) to the first one count as a click, not a drag.
DRAG_THRESHOLD_PX = 3.0


@dataclass(frozen=True, slots=True)
class AnnotationItem:
    """One annotation drawn in the window: a beat symbol or a rhythm episode band."""

    kind: str  # "beat" | "rhythm" | "note"
    symbol: str
    text: str  # what is written on the paper
    description: str  # what the tooltip says
    start_s: float
    end_s: float
    rect: QRectF  # where it is drawn


@dataclass(frozen=True, slots=True)
class Calipers:
    """Two vertical lines on one row; ``end_s`` is None while the second is being placed."""

    row: int
    lead: str
    start_s: float
    end_s: float | None

    def interval_ms(self) -> float | None:
        if self.end_s is None:
            return None
        return abs(self.end_s - self.start_s) * 1000.0


@dataclass(frozen=True, slots=True)
class _Episode:
    start_sample: int
    end_sample: int
    label: str


class EcgPaper(QWidget):
    """Paints one recording on calibrated ECG paper; all state the drawing needs lives here."""

    calipers_changed = Signal()
    #: Arrow and page keys on the paper: seconds to move (a page is the window's length).
    time_step_requested = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ecgPaper")
        self.setAccessibleName("ECG trace")
        self.setAccessibleDescription(
            "Twelve-lead ECG on calibrated paper; click two points on a lead to measure an "
            "interval, Escape clears the calipers."
        )
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._millivolts: npt.NDArray[np.float32] = np.zeros((0, 0), dtype=np.float32)
        self._lead_names: tuple[str, ...] = ()
        self._rate_hz = 1.0
        self._title = ""
        self._beat_samples: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._beat_annotations: list[EcgAnnotation] = []
        self._episodes: list[_Episode] = []
        self._relevance: dict[int, tuple[float, float, tuple[float, ...]]] = {}
        self._relevance_label = ""
        self._show_relevance = True
        self._speed = DEFAULT_SPEED_MM_PER_S
        self._gain = DEFAULT_GAIN_MM_PER_MV
        self._zoom = 1.0
        self._offset_s = 0.0
        self._rhythm_lead: str | None = None
        self._calipers: Calipers | None = None
        self._press_x: float | None = None
        self._dragging = False
        self._geometry: EcgGeometry | None = None
        self._grid_cache: QPixmap | None = None
        self._grid_key: tuple[int, int, float, float] | None = None
        self._traces: list[QPolygonF] | None = None
        self._traces_dpr = 0.0
        self._calibration: list[QPolygonF] = []
        self._shading: list[tuple[QRectF, QColor]] = []
        self._annotation_items: list[AnnotationItem] = []

    # -- data ------------------------------------------------------------------------------

    def set_data(
        self,
        millivolts: npt.NDArray[np.float32],
        lead_names: tuple[str, ...],
        rate_hz: float,
        annotations: tuple[EcgAnnotation, ...],
        title: str,
        *,
        keep_rhythm_lead: bool = False,
    ) -> None:
        """Show a recording already converted to mV; resets time offset and calipers."""
        self._millivolts = millivolts
        self._lead_names = lead_names
        self._rate_hz = rate_hz
        self._title = title
        beats = sorted(
            (a for a in annotations if a.kind in ("beat", "note")), key=lambda a: a.sample
        )
        self._beat_annotations = beats
        self._beat_samples = np.asarray([a.sample for a in beats], dtype=np.int64)
        self._episodes = self._rhythm_episodes(annotations, int(millivolts.shape[1]))
        self._offset_s = 0.0
        self._calipers = None
        if not keep_rhythm_lead or self._rhythm_lead not in lead_names:
            self._rhythm_lead = None
        self._relayout()
        self.calipers_changed.emit()

    @staticmethod
    def _rhythm_episodes(annotations: tuple[EcgAnnotation, ...], n_samples: int) -> list[_Episode]:
        """Rhythm annotations as (start, end) bands: each runs to its end or the next one."""
        rhythms = sorted((a for a in annotations if a.kind == "rhythm"), key=lambda a: a.sample)
        episodes = []
        for i, a in enumerate(rhythms):
            end = a.end_sample
            if end is None:
                end = rhythms[i + 1].sample if i + 1 < len(rhythms) else n_samples
            episodes.append(_Episode(a.sample, max(a.sample, end), a.label or a.symbol))
        return episodes

    def set_relevance(self, relevance: EcgRelevanceMap | None, label: str) -> None:
        """Relevance per lead over time, matched to the recording's leads by standard name."""
        self._relevance = {}
        self._relevance_label = label
        if relevance is not None and relevance.bin_s > 0:
            index_of = {normalise_lead_name(n): i for i, n in enumerate(self._lead_names)}
            for name, values in zip(relevance.lead_names, relevance.values, strict=False):
                index = index_of.get(normalise_lead_name(name))
                if index is not None:
                    self._relevance[index] = (relevance.start_s, relevance.bin_s, values)
        self._relayout()

    def has_relevance(self) -> bool:
        return bool(self._relevance)

    def set_relevance_visible(self, visible: bool) -> None:
        self._show_relevance = visible
        self.update()

    def relevance_label(self) -> str:
        return self._relevance_label

    def has_data(self) -> bool:
        return bool(self._lead_names) and self._millivolts.shape[1] > 0

    def lead_names(self) -> tuple[str, ...]:
        return self._lead_names

    def duration_s(self) -> float:
        return float(self._millivolts.shape[1]) / self._rate_hz if self.has_data() else 0.0

    # -- view settings ---------------------------------------------------------------------

    def set_speed(self, mm_per_s: float) -> None:
        self._speed = mm_per_s
        self._relayout()

    def set_gain(self, mm_per_mv: float) -> None:
        self._gain = mm_per_mv
        self._relayout()

    def set_zoom(self, zoom: float) -> None:
        if abs(zoom - self._zoom) > 1e-9:
            self._zoom = zoom
            self._relayout()

    def zoom(self) -> float:
        return self._zoom

    def set_offset(self, offset_s: float) -> None:
        if abs(offset_s - self._offset_s) > 1e-9:
            self._offset_s = offset_s
            self._relayout()

    def set_rhythm_lead(self, lead: str | None) -> None:
        self._rhythm_lead = lead
        self._calipers = None
        self._relayout()
        self.calipers_changed.emit()

    def rhythm_lead(self) -> str | None:
        geometry = self._geometry
        row = geometry.rhythm_row if geometry else None
        return row.segments[0].lead if row and row.segments else None

    def logical_dpi(self) -> float:
        """The screen's logical DPI (what one millimetre on screen is computed from)."""
        screen = self.screen()
        return float(screen.logicalDotsPerInch()) if screen else float(self.logicalDpiX())

    def px_per_mm_at_zoom_one(self) -> float:
        return self.logical_dpi() / MM_PER_INCH

    def paper_geometry(self) -> EcgGeometry | None:
        return self._geometry

    def annotation_items(self) -> list[AnnotationItem]:
        return list(self._annotation_items)

    def shaded_regions(self) -> list[tuple[QRectF, float]]:
        """Relevance rectangles being drawn now, with their alpha in [0, 1] (none when hidden)."""
        if not self._show_relevance:
            return []
        return [(rect, colour.alphaF()) for rect, colour in self._shading]

    # -- calipers --------------------------------------------------------------------------

    def calipers(self) -> Calipers | None:
        return self._calipers

    def place_calipers(self, lead: str, start_s: float, end_s: float | None) -> None:
        """Put the calipers on the row showing ``lead`` (its 3x4 cell, else its strip)."""
        geometry = self._geometry
        row = geometry.row_of(lead) if geometry else None
        if row is None:
            raise ValueError(f"lead {lead!r} is not shown")
        self._calipers = Calipers(
            row.index,
            lead,
            self._snap(start_s),
            None if end_s is None else self._snap(end_s),
        )
        self.update()
        self.calipers_changed.emit()

    def clear_calipers(self) -> None:
        if self._calipers is not None:
            self._calipers = None
            self._dragging = False
            self.update()
            self.calipers_changed.emit()

    def _snap(self, time_s: float) -> float:
        """To the nearest sample inside the recording."""
        last = max(0, self._millivolts.shape[1] - 1)
        sample = min(max(round(time_s * self._rate_hz), 0), last)
        return float(sample) / self._rate_hz

    # -- layout ----------------------------------------------------------------------------

    def refresh_screen(self) -> None:
        """Lay out again for the screen the widget is on now (its logical DPI may differ)."""
        self._grid_cache = None
        self._relayout()

    def _relayout(self) -> None:
        """Recompute geometry and everything derived from it; size the widget to the page."""
        self._traces = None
        if not self.has_data():
            self._geometry = None
            self._shading, self._annotation_items, self._calibration = [], [], []
            self.update()
            return
        geometry = compute_geometry(
            self._lead_names,
            self._rhythm_lead,
            px_per_mm=self.px_per_mm_at_zoom_one() * self._zoom,
            zoom=self._zoom,
            speed_mm_per_s=self._speed,
            gain_mm_per_mv=self._gain,
            offset_s=self._offset_s,
            duration_s=self.duration_s(),
            with_annotation_lane=bool(self._beat_annotations or self._episodes),
        )
        self._geometry = geometry
        self.setFixedSize(max(1, round(geometry.width)), max(1, round(geometry.height)))
        self._calibration = self._calibration_pulses(geometry)
        self._shading = self._relevance_rects(geometry)
        self._annotation_items = self._layout_annotations(geometry)
        self.update()

    def _calibration_pulses(self, g: EcgGeometry) -> list[QPolygonF]:
        """A 1 mV, 0.2 s square pulse at the left of each row, as an electrocardiograph prints."""
        mm = g.px_per_mm
        width = CALIBRATION_PULSE_S * g.px_per_s
        height = CALIBRATION_PULSE_MV * g.px_per_mv
        pulses = []
        for row in g.rows:
            x0, x1 = 2.0 * mm, 3.0 * mm
            y = row.baseline
            points = [
                QPointF(x0, y),
                QPointF(x1, y),
                QPointF(x1, y - height),
                QPointF(x1 + width, y - height),
                QPointF(x1 + width, y),
                QPointF(x1 + width + mm, y),
            ]
            pulses.append(QPolygonF(points))
        return pulses

    def _relevance_rects(self, g: EcgGeometry) -> list[tuple[QRectF, QColor]]:
        rects: list[tuple[QRectF, QColor]] = []
        for row in g.rows:
            for segment in row.segments:
                entry = self._relevance.get(segment.signal_index)
                if entry is None:
                    continue
                start_s, bin_s, values = entry
                first = max(0, int((segment.start_s - start_s) // bin_s))
                last = min(len(values), int(np.ceil((segment.end_s - start_s) / bin_s)))
                for k in range(first, last):
                    value = min(max(values[k], 0.0), 1.0)
                    if value < RELEVANCE_FLOOR:
                        continue
                    t0 = max(segment.start_s, start_s + k * bin_s)
                    t1 = min(segment.end_s, start_s + (k + 1) * bin_s)
                    if t1 <= t0:
                        continue
                    x0, x1 = g.x_at(t0), g.x_at(t1)
                    colour = QColor(RELEVANCE_COLOUR)
                    colour.setAlpha(round(RELEVANCE_MAX_ALPHA * value))
                    rects.append((QRectF(x0, row.top, x1 - x0, row.bottom - row.top), colour))
        return rects

    def _layout_annotations(self, g: EcgGeometry) -> list[AnnotationItem]:
        row = g.rhythm_row
        if row is None or row.lane_top is None:
            return []
        mm = g.px_per_mm
        t0, t1 = g.offset_s, g.offset_s + g.window_s
        s0, s1 = int(np.ceil(t0 * self._rate_hz)), int(np.floor(t1 * self._rate_hz))
        items: list[AnnotationItem] = []
        band_top, band_height = row.lane_top + 0.5 * mm, 4.0 * mm
        for episode in self._episodes:
            if episode.end_sample < s0 or episode.start_sample > s1:
                continue
            start = max(t0, episode.start_sample / self._rate_hz)
            end = min(t1, episode.end_sample / self._rate_hz)
            code = rhythm_code(episode.label)
            name = rhythm_name(episode.label)
            span = (
                f"{episode.start_sample / self._rate_hz:.1f}–"
                f"{episode.end_sample / self._rate_hz:.1f} s"
            )
            x0, x1 = g.x_at(start), g.x_at(end)
            items.append(
                AnnotationItem(
                    "rhythm",
                    code,
                    f"({code}) {name}" if name != code else f"({code})",
                    f"Rhythm {name} ({code}), {span}",
                    start,
                    end,
                    QRectF(x0, band_top, max(x1 - x0, 1.0), band_height),
                )
            )
        lo = int(np.searchsorted(self._beat_samples, s0, side="left"))
        hi = int(np.searchsorted(self._beat_samples, s1, side="right"))
        symbol_top, symbol_height = row.lane_top + 5.0 * mm, 5.0 * mm
        for annotation in self._beat_annotations[lo:hi]:
            time_s = annotation.sample / self._rate_hz
            x = g.x_at(time_s)
            text = annotation.symbol if annotation.kind == "beat" else (annotation.symbol or "*")
            description = beat_name(annotation.symbol)
            if annotation.label:
                description += f": {annotation.label}"
            items.append(
                AnnotationItem(
                    annotation.kind,
                    annotation.symbol,
                    text,
                    f"{description[:1].upper()}{description[1:]} at {time_s:.3f} s",
                    time_s,
                    time_s,
                    QRectF(x - 1.5 * mm, symbol_top, 3.0 * mm, symbol_height),
                )
            )
        return items

    def _build_traces(self, g: EcgGeometry, dpr: float) -> list[QPolygonF]:
        """Polylines for every lead segment, decimated to two points per device pixel."""
        polygons: list[QPolygonF] = []
        samples_per_px = self._rate_hz / (g.px_per_s * dpr)
        n = int(self._millivolts.shape[1])
        for row in g.rows:
            for segment in row.segments:
                s0 = max(0, int(np.ceil(segment.start_s * self._rate_hz - 1e-9)))
                s1 = min(n, int(np.ceil(segment.end_s * self._rate_hz - 1e-9)) + 1)
                if s1 - s0 < 2:
                    continue
                values = self._millivolts[segment.signal_index, s0:s1]
                positions, levels = envelope(values, samples_per_px)
                levels = levels - self._segment_level(segment)
                xs = g.x_at(s0 / self._rate_hz) + positions * (g.px_per_s / self._rate_hz)
                xs = np.minimum(xs, segment.x1)
                ys = row.baseline - levels * g.px_per_mv
                polygons.extend(polygon(xs[a:b], ys[a:b]) for a, b in finite_runs(ys))
        return polygons

    def _segment_level(self, segment: LeadSegment) -> float:
        """The median of the samples a segment shows, drawn on the row's baseline.

        Recordings carry a DC offset (MIT-BIH 100's MLII sits near -0.3 mV) that would push the
        trace off its row; a constant shift per drawn segment changes no interval, amplitude
        or ST deviation (all read against the trace's own isoelectric line)."""
        n = int(self._millivolts.shape[1])
        s0 = max(0, int(np.ceil(segment.start_s * self._rate_hz - 1e-9)))
        s1 = min(n, int(np.ceil(segment.end_s * self._rate_hz - 1e-9)) + 1)
        values = self._millivolts[segment.signal_index, s0:s1]
        finite = values[np.isfinite(values)]
        return float(np.median(finite)) if finite.size else 0.0

    # -- painting --------------------------------------------------------------------------

    def _grid_pixmap(self, g: EcgGeometry) -> QPixmap:
        dpr = self.devicePixelRatioF()
        key = (self.width(), self.height(), dpr, g.px_per_mm)
        if self._grid_cache is not None and self._grid_key == key:
            return self._grid_cache
        pixmap = QPixmap(round(self.width() * dpr), round(self.height() * dpr))
        pixmap.setDevicePixelRatio(dpr)
        pixmap.fill(PAPER_COLOUR)
        painter = QPainter(pixmap)
        mm = g.px_per_mm
        width, height = float(self.width()), float(self.height())
        columns = int(width / mm) + 1
        rows = int(height / mm) + 1
        minor_pen = QPen(MINOR_GRID_COLOUR, 0)  # cosmetic: one device pixel at any zoom
        major_pen = QPen(MAJOR_GRID_COLOUR, max(1.0, 0.2 * mm) if mm >= 6 else 0)
        for pen, major in ((minor_pen, False), (major_pen, True)):
            painter.setPen(pen)
            for i in range(columns):
                if (i % 5 == 0) == major:
                    painter.drawLine(QPointF(i * mm, 0.0), QPointF(i * mm, height))
            for j in range(rows):
                if (j % 5 == 0) == major:
                    painter.drawLine(QPointF(0.0, j * mm), QPointF(width, j * mm))
        painter.end()
        self._grid_cache, self._grid_key = pixmap, key
        return pixmap

    def _font(self, height_mm: float, bold: bool = False) -> QFont:
        """A font whose capitals are about ``height_mm`` tall on the paper at this zoom."""
        font = QFont(self.font())
        mm = self._geometry.px_per_mm if self._geometry else 4.0
        points = height_mm * mm * 72.0 / self.logical_dpi() * 1.4
        font.setPointSizeF(max(5.0, min(points, 28.0)))
        font.setBold(bold)
        return font

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        g = self._geometry
        if g is None:
            painter.fillRect(self.rect(), self.palette().window())
            painter.end()
            return
        painter.drawPixmap(0, 0, self._grid_pixmap(g))
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        if self._show_relevance:
            for rect, colour in self._shading:
                painter.fillRect(rect, colour)
        self._paint_annotations(painter)
        dpr = self.devicePixelRatioF()
        if self._traces is None or self._traces_dpr != dpr:
            self._traces, self._traces_dpr = self._build_traces(g, dpr), dpr
        painter.setPen(QPen(TRACE_COLOUR, max(1.0, min(TRACE_LINE_MM * g.px_per_mm, 3.0))))
        for polygon in self._calibration:
            painter.drawPolyline(polygon)
        self._paint_traces(painter, g, dpr)
        self._paint_labels(painter, g)
        self._paint_calipers(painter, g)
        painter.end()

    def _paint_traces(self, painter: QPainter, g: EcgGeometry, dpr: float) -> None:
        """Stroke the traces about 0.25 mm thick with one-device-pixel cosmetic pens, drawn
        once per device pixel of thickness, offset diagonally: Qt's raster engine strokes a
        hairline in about 1 ms where a wide antialiased pen over the same 10,000 points takes
        30-90 ms, far over the 50 ms a paint may take."""
        assert self._traces is not None
        pen = QPen(TRACE_COLOUR, 0)
        pen.setCosmetic(True)
        painter.setPen(pen)
        passes = min(max(round(TRACE_LINE_MM * g.px_per_mm * dpr), 1), 3)
        for k in range(passes):
            shift = (k - (passes - 1) / 2) / dpr
            painter.translate(shift, shift)
            for polygon in self._traces:
                painter.drawPolyline(polygon)
            painter.translate(-shift, -shift)

    def _paint_labels(self, painter: QPainter, g: EcgGeometry) -> None:
        mm = g.px_per_mm
        painter.setPen(QPen(TEXT_COLOUR, max(1.0, 0.25 * mm)))
        label_font = self._font(2.5, bold=True)
        painter.setFont(label_font)
        ascent = QFontMetricsF(label_font).ascent()
        for row in g.rows:
            for c, segment in enumerate(row.segments):
                if c > 0:  # a short bar where one lead hands over to the next, as printed
                    painter.drawLine(
                        QPointF(segment.x0, row.baseline - 2.5 * mm),
                        QPointF(segment.x0, row.baseline + 2.5 * mm),
                    )
                painter.drawText(
                    QPointF(segment.x0 + 1.5 * mm, row.top + 1.0 * mm + ascent), segment.lead
                )
        header_font = self._font(2.5)
        painter.setFont(header_font)
        metrics = QFontMetricsF(header_font)
        baseline_y = (HEADER_MM - 3.0) * mm
        left = g.trace_left
        if self._title:
            bold = self._font(2.5, bold=True)
            painter.setFont(bold)
            title = QFontMetricsF(bold).elidedText(
                self._title, Qt.TextElideMode.ElideRight, 0.55 * (g.page_right - left)
            )
            painter.drawText(QPointF(left, baseline_y), title)
            painter.setFont(header_font)
        calibration = (
            f"{self._speed:g} mm/s   {self._gain:g} mm/mV   {self._rate_hz:g} Hz   grid 1 mm / 5 mm"
        )
        painter.drawText(
            QPointF(g.page_right - metrics.horizontalAdvance(calibration), baseline_y),
            calibration,
        )
        footer_y = g.height - (FOOTER_MM - 6.0) * mm - metrics.descent()
        end = min(g.offset_s + g.window_s, self.duration_s())
        window_text = span_text(g.offset_s, end, self.duration_s())
        if g.twelve_lead:
            window_text += f"   columns of {g.span_s / 4:g} s each"
        painter.drawText(QPointF(left, footer_y), window_text)
        if self._show_relevance and self._shading:
            self._paint_relevance_legend(painter, g, footer_y, metrics)

    def _paint_relevance_legend(
        self, painter: QPainter, g: EcgGeometry, text_y: float, metrics: QFontMetricsF
    ) -> None:
        mm = g.px_per_mm
        text = f"shaded: relevance to {self._relevance_label or 'the suggestion'}"
        text_x = g.page_right - metrics.horizontalAdvance(text)
        gap = metrics.horizontalAdvance(" 1  ")
        swatch = QRectF(
            text_x - gap - 20 * mm, text_y - metrics.ascent(), 20 * mm, metrics.ascent()
        )
        gradient = QLinearGradient(swatch.topLeft(), swatch.topRight())
        low, high = QColor(RELEVANCE_COLOUR), QColor(RELEVANCE_COLOUR)
        low.setAlpha(0)
        high.setAlpha(RELEVANCE_MAX_ALPHA)
        gradient.setColorAt(0.0, low)
        gradient.setColorAt(1.0, high)
        painter.fillRect(swatch, QBrush(gradient))
        painter.drawText(QPointF(swatch.left() - metrics.horizontalAdvance("0 "), text_y), "0")
        painter.drawText(QPointF(swatch.right() + metrics.horizontalAdvance(" "), text_y), "1")
        painter.drawText(QPointF(text_x, text_y), text)

    def _paint_annotations(self, painter: QPainter) -> None:
        if not self._annotation_items:
            return
        band_font = self._font(2.6)
        beat_font = self._font(3.0, bold=True)
        for item in self._annotation_items:
            if item.kind == "rhythm":
                painter.fillRect(item.rect, RHYTHM_BAND_COLOUR)
                painter.setPen(TEXT_COLOUR)
                painter.setFont(band_font)
                inner = item.rect.adjusted(2.0, 0.0, -2.0, 0.0)
                text = QFontMetricsF(band_font).elidedText(
                    item.text, Qt.TextElideMode.ElideRight, inner.width()
                )
                painter.drawText(inner, int(Qt.AlignmentFlag.AlignVCenter), text)
            else:
                if item.symbol in VENTRICULAR_SYMBOLS:
                    colour = VENTRICULAR_COLOUR
                elif item.symbol in SUPRAVENTRICULAR_SYMBOLS:
                    colour = SUPRAVENTRICULAR_COLOUR
                else:
                    colour = NORMAL_BEAT_COLOUR
                painter.setPen(colour)
                painter.setFont(beat_font)
                painter.drawText(item.rect, int(Qt.AlignmentFlag.AlignCenter), item.text)

    def _paint_calipers(self, painter: QPainter, g: EcgGeometry) -> None:
        calipers = self._calipers
        if calipers is None or calipers.row >= len(g.rows):
            return
        row = g.rows[calipers.row]
        mm = g.px_per_mm
        pen = QPen(CALIPER_COLOUR, max(1.0, 0.3 * mm))
        painter.setPen(pen)
        top, bottom = row.top + 0.5 * mm, row.bottom - 0.5 * mm
        xa = g.x_at(calipers.start_s)
        painter.drawLine(QPointF(xa, top), QPointF(xa, bottom))
        if calipers.end_s is None:
            return
        xb = g.x_at(calipers.end_s)
        painter.drawLine(QPointF(xb, top), QPointF(xb, bottom))
        bar_y = bottom - 3.0 * mm  # below the baseline, clear of the lead label
        painter.drawLine(QPointF(xa, bar_y), QPointF(xb, bar_y))
        readout = caliper_text(calipers.interval_ms())
        if readout:
            font = self._font(2.5, bold=True)
            painter.setFont(font)
            metrics = QFontMetricsF(font)
            width = metrics.horizontalAdvance(readout) + 2 * mm
            box = QRectF(
                (xa + xb) / 2 - width / 2,
                bar_y - metrics.height() - 1.5 * mm,
                width,
                metrics.height() + mm,
            )
            box.moveLeft(min(max(box.left(), 0.0), g.width - box.width()))
            painter.fillRect(box, QColor(255, 255, 255, 225))
            painter.drawText(box, int(Qt.AlignmentFlag.AlignCenter), readout)

    # -- interaction -----------------------------------------------------------------------

    def _caliper_target(self, x: float, y: float) -> tuple[EcgRow, LeadSegment] | None:
        g = self._geometry
        if g is None:
            return None
        row = g.row_at(y)
        if row is None:
            return None
        segment = row.segment_at_x(x)
        return (row, segment) if segment is not None else None

    def _time_at(self, x: float) -> float:
        g = self._geometry
        assert g is not None
        x = min(max(x, g.trace_left), g.trace_right)
        return self._snap(g.time_at(x))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            super().mousePressEvent(event)
            return
        position = event.position()
        target = self._caliper_target(position.x(), position.y())
        if target is None:
            return
        row, segment = target
        time_s = self._time_at(position.x())
        current = self._calipers
        if current is not None and current.end_s is None and current.row == row.index:
            self._calipers = Calipers(row.index, current.lead, current.start_s, time_s)
            self._press_x = None
        else:
            self._calipers = Calipers(row.index, segment.lead, time_s, None)
            self._press_x = position.x()
        self._dragging = False
        self.update()
        self.calipers_changed.emit()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        current = self._calipers
        if (
            self._press_x is None
            or current is None
            or not event.buttons() & Qt.MouseButton.LeftButton
        ):
            super().mouseMoveEvent(event)
            return
        x = event.position().x()
        if not self._dragging and abs(x - self._press_x) < DRAG_THRESHOLD_PX:
            return
        self._dragging = True
        self._calipers = Calipers(current.row, current.lead, current.start_s, self._time_at(x))
        self.update()
        self.calipers_changed.emit()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._press_x = None
            self._dragging = False
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape and self._calipers is not None:
            self.clear_calipers()
            return
        g = self._geometry
        steps = {
            Qt.Key.Key_Right: 1.0,
            Qt.Key.Key_Left: -1.0,
            Qt.Key.Key_PageDown: g.window_s if g else 0.0,
            Qt.Key.Key_PageUp: -g.window_s if g else 0.0,
        }
        step = steps.get(Qt.Key(event.key()))
        if step:
            self.time_step_requested.emit(step)
            return
        super().keyPressEvent(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            text = self.describe_point(event.pos().x(), event.pos().y())
            if text:
                QToolTip.showText(event.globalPos(), text, self)
            else:
                QToolTip.hideText()
                event.ignore()
            return True
        return super().event(event)

    def describe_point(self, x: float, y: float) -> str:
        """What is under (x, y): an annotation, or the lead, time, amplitude and relevance."""
        for item in self._annotation_items:
            if item.rect.adjusted(-1, -1, 1, 1).contains(QPointF(x, y)):
                return item.description
        g = self._geometry
        target = self._caliper_target(x, y)
        if g is None or target is None or not g.trace_left <= x <= g.trace_right:
            return ""
        _row, segment = target
        time_s = g.time_at(x)
        sample = round(time_s * self._rate_hz)
        if not 0 <= sample < self._millivolts.shape[1]:
            return ""
        value = float(self._millivolts[segment.signal_index, sample])
        parts = [f"Lead {segment.lead}", f"{time_s:.3f} s"]
        if np.isfinite(value):
            level = value - self._segment_level(segment)
            parts.append(f"{level:+.2f} mV from the drawn baseline")
        entry = self._relevance.get(segment.signal_index)
        if entry is not None and self._show_relevance:
            start_s, bin_s, values = entry
            k = int((time_s - start_s) // bin_s)
            if 0 <= k < len(values):
                parts.append(f"relevance {values[k]:.2f}")
        return " · ".join(parts)


def polygon(xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64]) -> QPolygonF:
    """A QPolygonF from coordinate arrays, read from QPolygonF's QDataStream form (count, then
    big-endian double pairs): about 8x faster than building one QPointF per point in Python."""
    points = np.empty((xs.shape[0], 2), dtype=">f8")
    points[:, 0] = xs
    points[:, 1] = ys
    stream = QDataStream(QByteArray(struct.pack(">I", xs.shape[0]) + points.tobytes()))
    result = QPolygonF()
    stream >> result
    return result


def caliper_text(interval_ms: float | None) -> str:
    """'820 ms · 73 bpm' for an interval; empty when there is none."""
    if interval_ms is None:
        return ""
    if interval_ms <= 0:
        return "0 ms"
    return f"{interval_ms:.0f} ms · {60000.0 / interval_ms:.0f} bpm"


def span_text(start_s: float, end_s: float, total_s: float) -> str:
    """'0.0–10.0 s of 10.0 s', or '2:10.0–2:20.0 of 30:05.6' for a recording over a minute."""
    if total_s < 60:
        return f"{start_s:.1f}–{end_s:.1f} s of {total_s:.1f} s"

    def clock(seconds: float) -> str:
        minutes, rest = divmod(seconds, 60.0)
        return f"{int(minutes)}:{rest:04.1f}"

    return f"{clock(start_s)}–{clock(end_s)} of {clock(total_s)}"
